"""Retrying an async operation with exponential backoff and full jitter."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attempt `n` (1-based) that fails with a retryable error is followed by a sleep drawn
    uniformly from `[0, min(max_delay, base_delay * multiplier ** (n - 1))]` ("full
    jitter"): clients that failed together spread out instead of retrying in lockstep.

    Args:
        max_attempts: attempts in total, the first one included (1 means never retry).
        base_delay: the cap of the first backoff, in seconds.
        max_delay: the largest cap any backoff may reach, in seconds.
        multiplier: growth of the cap per attempt.
    """

    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 10.0
    multiplier: float = 2.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")

    def backoff_cap(self, attempt: int) -> float:
        """The largest sleep after failed attempt `attempt` (1-based)."""
        exponent = min(attempt - 1, 60)  # keeps the float finite for absurd attempt counts
        return float(min(self.max_delay, self.base_delay * self.multiplier**exponent))

    def backoff(self, attempt: int) -> float:
        """A full-jitter sleep after failed attempt `attempt` (1-based)."""
        return self.random() * self.backoff_cap(attempt)


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Runs `operation` until it succeeds, fails permanently or runs out of attempts.

    Args:
        operation: called afresh for every attempt.
        policy: attempts and backoff.
        retryable: whether an error may go away on another attempt; anything else is raised
            at once. `asyncio.CancelledError` is never retried.
        on_retry: told (attempt, error, sleep) before each backoff, e.g. to count retries.
        sleep: how to wait (tests pass a fake clock).

    Returns the operation's result; raises the last error when every attempt failed.
    """
    attempt = 1
    while True:
        try:
            return await operation()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if attempt >= policy.max_attempts or not retryable(error):
                raise
            delay = policy.backoff(attempt)
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await sleep(delay)
            attempt += 1
