"""Circuit breakers: stop calling a dependency that keeps failing, probe it now and then."""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(Exception):
    """Raised instead of calling a dependency whose breaker is open."""

    def __init__(self, key: str, retry_after: float) -> None:
        self.key = key
        self.retry_after = retry_after
        super().__init__(f"circuit for {key!r} is open; next probe in {retry_after:.1f} s")


@dataclass(frozen=True)
class BreakerSettings:
    """Args:
    failure_threshold: consecutive failures that open a closed breaker.
    reset_timeout: seconds an open breaker waits before letting probes through.
    half_open_probes: calls allowed at once while half-open; the first success closes
        the breaker, any failure opens it again.
    """

    failure_threshold: int = 5
    reset_timeout: float = 30.0
    half_open_probes: int = 1


DEFAULT_BREAKER_SETTINGS = BreakerSettings()


class CircuitBreaker:
    """One breaker. Thread-safe, so it can guard calls made from a thread pool.

    Only failures the caller reports count (`record_failure`): a dependency answering
    "your request is invalid" is healthy, and counting that would open the breaker on bad
    input. `guard()` is the usual way in: it raises CircuitOpenError while open, and records
    success or failure of the block, counting an exception as a failure when
    `counts_as_failure(error)` says so.
    """

    def __init__(
        self,
        key: str,
        settings: BreakerSettings = DEFAULT_BREAKER_SETTINGS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.failure_threshold < 1 or settings.half_open_probes < 1:
            raise ValueError("failure_threshold and half_open_probes must be at least 1")
        self.key = key
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current_state()

    def _current_state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.settings.reset_timeout
        ):
            self._state = BreakerState.HALF_OPEN
            self._probes = 0
        return self._state

    def before_call(self) -> None:
        """Raises CircuitOpenError unless a call may go ahead now."""
        with self._lock:
            state = self._current_state()
            if state is BreakerState.OPEN:
                remaining = self.settings.reset_timeout - (self._clock() - self._opened_at)
                raise CircuitOpenError(self.key, max(0.0, remaining))
            if state is BreakerState.HALF_OPEN:
                if self._probes >= self.settings.half_open_probes:
                    raise CircuitOpenError(self.key, 0.0)
                self._probes += 1

    def record_success(self) -> None:
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probes = 0

    def record_failure(self) -> None:
        with self._lock:
            state = self._current_state()
            self._failures += 1
            if state is BreakerState.HALF_OPEN or self._failures >= self.settings.failure_threshold:
                if state is not BreakerState.OPEN:
                    self.times_opened += 1
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._probes = 0

    def release_probe(self) -> None:
        """A half-open probe that ended neither in success nor failure gives its slot back."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN and self._probes > 0:
                self._probes -= 1

    @contextlib.contextmanager
    def guard(
        self, counts_as_failure: Callable[[BaseException], bool] = lambda _error: True
    ) -> Iterator[None]:
        """Runs the block if the breaker allows it and records how it went."""
        self.before_call()
        try:
            yield
        except Exception as error:
            if counts_as_failure(error):
                self.record_failure()
            else:
                # Neither healthy nor failing (say, the request was invalid): the dependency
                # answered, which breaks a run of consecutive failures.
                self.record_neutral()
            raise
        except BaseException:
            # Cancelled: nothing learnt about the dependency; a probe slot frees up.
            self.release_probe()
            raise
        else:
            self.record_success()

    def record_neutral(self) -> None:
        """An outcome that says nothing about the dependency's health (e.g. a 400)."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                # The dependency answered: that is as good as a successful probe.
                self._state = BreakerState.CLOSED
                self._probes = 0
            self._failures = 0


class CircuitBreakers:
    """One breaker per key (an account, a platform), created on first use."""

    def __init__(
        self,
        settings: BreakerSettings = DEFAULT_BREAKER_SETTINGS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, key: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(key, self.settings, clock=self._clock)
                self._breakers[key] = breaker
            return breaker

    def states(self) -> dict[str, BreakerState]:
        with self._lock:
            breakers = list(self._breakers.values())
        return {breaker.key: breaker.state for breaker in breakers}
