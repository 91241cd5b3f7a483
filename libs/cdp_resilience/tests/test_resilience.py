from __future__ import annotations

import asyncio

import pytest

from cdp_resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitBreakers,
    CircuitOpenError,
    KeyedLimiter,
    RetryPolicy,
    bounded_gather,
    retry,
)
from cdp_resilience.breaker import BreakerSettings
from cdp_testing import wait_until


def state_of(owner: object, attribute: str) -> BreakerState:
    """Read through a function: mypy would otherwise narrow the property between reads."""
    state: BreakerState = getattr(owner, attribute)
    return state


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_caps_grow_exponentially_up_to_the_maximum() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, multiplier=2.0)
    assert [policy.backoff_cap(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_full_jitter_draws_between_zero_and_the_cap() -> None:
    draws = iter([0.0, 0.5, 0.999])
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, random=lambda: next(draws))
    assert [policy.backoff(3) for _ in range(3)] == [0.0, 2.0, pytest.approx(3.996)]


def test_a_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


async def test_retry_returns_once_a_transient_failure_clears() -> None:
    clock = FakeClock()
    outcomes: list[Exception | str] = [Transient(), Transient(), "ok"]
    seen: list[int] = []

    async def operation() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = await retry(
        operation,
        policy=RetryPolicy(max_attempts=5, base_delay=1.0, random=lambda: 1.0),
        retryable=lambda error: isinstance(error, Transient),
        on_retry=lambda attempt, _error, _delay: seen.append(attempt),
        sleep=clock.sleep,
    )
    assert result == "ok"
    assert seen == [1, 2]
    assert clock.sleeps == [1.0, 2.0]


async def test_retry_raises_a_permanent_failure_at_once() -> None:
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        raise Permanent()

    with pytest.raises(Permanent):
        await retry(operation, policy=RetryPolicy(), retryable=lambda e: isinstance(e, Transient))
    assert calls == 1


async def test_retry_gives_up_after_max_attempts_with_the_last_error() -> None:
    clock = FakeClock()
    calls = 0

    async def operation() -> None:
        nonlocal calls
        calls += 1
        raise Transient(calls)

    with pytest.raises(Transient) as caught:
        await retry(
            operation,
            policy=RetryPolicy(max_attempts=3),
            retryable=lambda _e: True,
            sleep=clock.sleep,
        )
    assert calls == 3 and caught.value.args == (3,)
    assert len(clock.sleeps) == 2


def breaker(clock: FakeClock, threshold: int = 3, probes: int = 1) -> CircuitBreaker:
    return CircuitBreaker(
        "account-1",
        BreakerSettings(failure_threshold=threshold, reset_timeout=10.0, half_open_probes=probes),
        clock=clock,
    )


def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = FakeClock()
    guarded = breaker(clock)
    for _ in range(2):
        guarded.record_failure()
    assert state_of(guarded, "state") is BreakerState.CLOSED
    guarded.record_failure()
    assert state_of(guarded, "state") is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as caught:
        guarded.before_call()
    assert caught.value.retry_after == pytest.approx(10.0)
    assert "account-1" in str(caught.value)


def test_a_success_resets_the_failure_count() -> None:
    guarded = breaker(FakeClock())
    guarded.record_failure()
    guarded.record_failure()
    guarded.record_success()
    guarded.record_failure()
    guarded.record_failure()
    assert state_of(guarded, "state") is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_closes_on_its_success() -> None:
    clock = FakeClock()
    guarded = breaker(clock, threshold=1)
    guarded.record_failure()
    clock.now += 10.0
    assert state_of(guarded, "state") is BreakerState.HALF_OPEN
    guarded.before_call()
    with pytest.raises(CircuitOpenError):
        guarded.before_call()
    guarded.record_success()
    assert state_of(guarded, "state") is BreakerState.CLOSED
    guarded.before_call()


def test_a_failed_probe_opens_the_breaker_again_for_a_full_timeout() -> None:
    clock = FakeClock()
    guarded = breaker(clock, threshold=2)
    guarded.record_failure()
    guarded.record_failure()
    clock.now += 10.0
    guarded.before_call()
    guarded.record_failure()
    assert state_of(guarded, "state") is BreakerState.OPEN
    assert guarded.times_opened == 2
    clock.now += 9.0
    assert state_of(guarded, "state") is BreakerState.OPEN


def test_guard_counts_only_the_failures_the_caller_says_count() -> None:
    guarded = breaker(FakeClock(), threshold=1)
    with pytest.raises(Permanent), guarded.guard(lambda e: isinstance(e, Transient)):
        raise Permanent()
    assert state_of(guarded, "state") is BreakerState.CLOSED
    with pytest.raises(Transient), guarded.guard(lambda e: isinstance(e, Transient)):
        raise Transient()
    assert state_of(guarded, "state") is BreakerState.OPEN


def test_a_cancelled_probe_gives_its_slot_back() -> None:
    clock = FakeClock()
    guarded = breaker(clock, threshold=1)
    guarded.record_failure()
    clock.now += 10.0
    with pytest.raises(asyncio.CancelledError), guarded.guard():
        raise asyncio.CancelledError()
    assert state_of(guarded, "state") is BreakerState.HALF_OPEN
    guarded.before_call()


def test_breakers_are_kept_per_key() -> None:
    breakers = CircuitBreakers(BreakerSettings(failure_threshold=1))
    breakers.get("a").record_failure()
    assert breakers.get("a") is breakers.get("a")
    assert breakers.states() == {"a": BreakerState.OPEN}
    assert breakers.get("b").state is BreakerState.CLOSED


async def test_keyed_limiter_never_lets_more_than_the_limit_in_per_key() -> None:
    limiter = KeyedLimiter(3)
    release = asyncio.Event()

    async def hold(key: str) -> None:
        async with limiter.hold(key):
            await release.wait()

    tasks = [asyncio.create_task(hold("a")) for _ in range(8)]
    tasks += [asyncio.create_task(hold("b")) for _ in range(2)]
    await wait_until(lambda: limiter.waiting("a") == 5 and limiter.in_flight("b") == 2)
    assert limiter.in_flight("a") == 3
    assert limiter.in_flight("b") == 2
    release.set()
    await asyncio.gather(*tasks)
    assert limiter.peak_in_flight == {"a": 3, "b": 2}
    assert limiter.in_flight("a") == 0


async def test_keyed_limiter_lets_retries_in_before_first_attempts_in_arrival_order() -> None:
    limiter = KeyedLimiter(1)
    release = asyncio.Event()
    order: list[str] = []

    async def hold(name: str, *, retrying: bool = False) -> None:
        async with limiter.hold("a", retry=retrying):
            order.append(name)
            if name == "holder":
                await release.wait()

    holder = asyncio.create_task(hold("holder"))
    await wait_until(lambda: limiter.in_flight("a") == 1)
    waiters = []
    for name, retrying in [("first-1", False), ("retry-1", True), ("first-2", False),
                           ("retry-2", True)]:
        waiters.append(asyncio.create_task(hold(name, retrying=retrying)))
        # Each queues before the next arrives, so arrival order is the order listed.
        await wait_until(lambda: limiter.waiting("a") == len(waiters))
    release.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["holder", "retry-1", "retry-2", "first-1", "first-2"]
    assert limiter.in_flight("a") == 0 and limiter.peak_in_flight == {"a": 1}


async def test_keyed_limiter_gives_back_the_slot_of_a_cancelled_waiter() -> None:
    limiter = KeyedLimiter(1)
    release = asyncio.Event()

    async def hold() -> None:
        async with limiter.hold("a"):
            await release.wait()

    holder = asyncio.create_task(hold())
    await wait_until(lambda: limiter.in_flight("a") == 1)
    cancelled = asyncio.create_task(hold())
    await wait_until(lambda: limiter.waiting("a") == 1)
    cancelled.cancel()
    release.set()
    await holder
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    # The slot is free again: a newcomer gets it at once.
    async with asyncio.timeout(1):
        async with limiter.hold("a"):
            assert limiter.in_flight("a") == 1
    assert limiter.in_flight("a") == 0


async def test_bounded_gather_keeps_order_and_caps_concurrency() -> None:
    running = 0
    peak = 0

    async def work(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        return item * 10

    assert await bounded_gather(range(20), work, limit=4) == [i * 10 for i in range(20)]
    assert peak == 4


async def test_bounded_gather_raises_the_first_error() -> None:
    async def work(item: int) -> int:
        if item == 3:
            raise Permanent(item)
        return item

    with pytest.raises(ExceptionGroup) as caught:
        await bounded_gather(range(6), work, limit=2)
    assert caught.group_contains(Permanent)
