"""Recovering from failing dependencies: retries, circuit breakers and bounded concurrency.

Three independent pieces, generic over what they protect (a platform API, a peer service):

- `RetryPolicy` / `retry`: exponential backoff with full jitter (AWS Architecture Blog,
  "Exponential Backoff And Jitter"), deciding per error whether another attempt can help.
- `CircuitBreaker` / `CircuitBreakers`: closed -> open after consecutive failures -> half-open
  after a cool-down, letting a bounded number of probes through; one breaker per key (an
  account, a platform), so one failing account never stops another.
- `KeyedLimiter` / `bounded_gather`: at most N operations in flight per key, and running many
  coroutines with a cap.

They compose: `breaker.guard()` around each attempt inside `retry`, inside `limiter.hold(key)`.
Nothing here logs personal data or imports a service.
"""

from cdp_resilience.breaker import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakers,
    CircuitOpenError,
)
from cdp_resilience.concurrency import KeyedLimiter, bounded_gather
from cdp_resilience.retry import RetryPolicy, retry

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakers",
    "CircuitOpenError",
    "KeyedLimiter",
    "RetryPolicy",
    "bounded_gather",
    "retry",
]
