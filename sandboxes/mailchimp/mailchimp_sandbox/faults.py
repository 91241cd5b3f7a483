"""Fault injection: the failures a client of the real API meets, on switches tests control."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    """What to inject into `/3.0` calls. Rates are probabilities per call, in [0, 1].

    Attributes:
        max_in_flight: simultaneous requests allowed per API key before a 429 (Mailchimp: 10).
        latency_ms: the least time every call takes, counted from its arrival (the handling
            itself is part of it, as on a remote server).
        rate_429: problem+json 429 Too Many Requests, answered at once.
        rate_5xx: problem+json 500 / 503, after the latency.
        rate_bodiless_429 / rate_bodiless_403: a status with no body and no content type,
            which the SDK returns as a `requests.Response` instead of raising.
        rate_html_502: a 502 with an HTML body, as the CDN sends for a timed-out call.
        rate_drop: the connection is closed without a reply.
        rate_slow / slow_ms: some calls take `slow_ms` more (near a client timeout).
        errors_after_apply: 5xx, 502 and dropped connections happen after the call changed
            the state, as when a reply is lost; otherwise before (nothing applied).
        failing_members: subscriber hashes whose member calls (`.../members/<hash>...`)
            answer 503 before anything is applied, every time: one person's trouble, while
            calls for everyone else go through.
        seed: makes the random choices repeatable.
    """

    max_in_flight: int = 10
    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_bodiless_429: float = 0.0
    rate_bodiless_403: float = 0.0
    rate_html_502: float = 0.0
    rate_drop: float = 0.0
    rate_slow: float = 0.0
    slow_ms: float = 0.0
    errors_after_apply: bool = False
    failing_members: list[str] = field(default_factory=list)
    seed: int | None = None

    def update(self, changes: dict[str, Any]) -> None:
        """Applies `changes`; raises ValueError naming an unknown or out-of-range switch."""
        known = {f.name: f for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault switch {name!r}; known: {', '.join(known)}")
            if name.startswith("rate_") and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
            if name == "failing_members" and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise ValueError(f"failing_members must be a list of subscriber hashes, "
                                 f"got {value!r}")
            setattr(self, name, value)

    def view(self) -> dict[str, Any]:
        return asdict(self)


class FaultPlan:
    """Draws, per call, which fault (if any) to inject."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)

    def reseed(self) -> None:
        self._random = random.Random(self.faults.seed)

    def before(self) -> str | None:
        """A fault answered before the call is handled (and before the latency)."""
        roll = self._random.random()
        for name in ("rate_429", "rate_bodiless_429", "rate_bodiless_403"):
            rate = float(getattr(self.faults, name))
            if roll < rate:
                return name.removeprefix("rate_")
            roll -= rate
        return None

    def failure(self) -> str | None:
        """A failure of the handling itself: 5xx, an HTML 502 or a dropped connection."""
        roll = self._random.random()
        for name in ("rate_5xx", "rate_html_502", "rate_drop"):
            rate = float(getattr(self.faults, name))
            if roll < rate:
                return name.removeprefix("rate_")
            roll -= rate
        return None

    def member_fails(self, path: str) -> bool:
        """Whether `path` is a call on one of the failing members."""
        if not self.faults.failing_members:
            return False
        parts = path.split("/")
        for index, part in enumerate(parts[:-1]):
            if part == "members" and parts[index + 1] in self.faults.failing_members:
                return True
        return False

    def extra_delay(self) -> float:
        delay = self.faults.latency_ms / 1000
        if self.faults.rate_slow and self._random.random() < self.faults.rate_slow:
            delay += self.faults.slow_ms / 1000
        return delay
