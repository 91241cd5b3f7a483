"""The official `mailchimp-marketing` SDK behind an async, limited, retried, guarded facade.

The SDK is synchronous and opens a new connection per call, so every call runs on a bounded
thread pool, behind one limiter per account (Mailchimp allows 10 simultaneous connections
per user), with retries for what can go away (429, 5xx, timeouts, network errors) and a
circuit breaker per account. Its replies are normalised in one place (notes §1.5): a
`requests.Response` comes back for 204s *and* for body-less error replies (a bare 429 or
403), and `ApiClientError.text` is a dict, a JSON string or the network exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import mailchimp_marketing
import requests
from mailchimp_marketing.api_client import ApiClientError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from cdp_resilience import CircuitBreakers, CircuitOpenError, KeyedLimiter, RetryPolicy, retry
from cdp_resilience.breaker import BreakerState
from cdp_telemetry import redact

logger = logging.getLogger(__name__)

T = TypeVar("T")

COMPLIANCE_TITLES = ("Member In Compliance State", "Forgotten Email Not Subscribed")


class MailchimpError(Exception):
    """A failed Mailchimp call, normalised whatever shape the SDK gave it.

    The message carries status and title and a redacted detail: Mailchimp's details quote
    the email ("x is in a compliance state ..."), which must not reach a log or a caller.
    """

    def __init__(
        self,
        status: int | None,
        title: str,
        detail: str = "",
        *,
        errors: list[dict[str, Any]] | None = None,
        bodiless: bool = False,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = redact(detail)[:300]
        self.errors = errors or []
        self.bodiless = bodiless
        where = f"Mailchimp {status}" if status is not None else "Mailchimp unreachable"
        super().__init__(f"{where} {title}" + (f": {self.detail}" if self.detail else ""))

    @property
    def retryable(self) -> bool:
        """429, 5xx, network errors and timeouts, and the body-less 403 Mailchimp sends when
        it sheds load, may succeed on another attempt; any other 4xx never will."""
        if self.status is None or self.status == 429 or self.status >= 500:
            return True
        return self.status == 403 and self.bodiless

    @property
    def throttled(self) -> bool:
        return self.status == 429 or (self.status == 403 and self.bodiless)

    @property
    def compliance(self) -> bool:
        return self.title in COMPLIANCE_TITLES

    @property
    def not_found(self) -> bool:
        return self.status == 404


def _from_response(response: requests.Response) -> MailchimpError:
    return MailchimpError(
        response.status_code,
        response.reason or "error without a body",
        bodiless=not response.content,
    )


def _from_client_error(error: ApiClientError) -> MailchimpError:
    text: Any = error.text
    status = error.status_code
    if isinstance(text, BaseException) or status is None:
        name = type(text).__name__ if isinstance(text, BaseException) else "network error"
        return MailchimpError(None, name)
    if isinstance(text, str):
        try:
            text = json.loads(text)
        except ValueError:
            # An HTML page from the CDN (502 on a timed-out call) or plain text.
            return MailchimpError(status, "non-JSON error reply")
    if isinstance(text, dict):
        errors = text.get("errors")
        return MailchimpError(
            status,
            str(text.get("title") or "error"),
            str(text.get("detail") or ""),
            errors=errors if isinstance(errors, list) else None,
        )
    return MailchimpError(status, "error")


@dataclass(frozen=True)
class MailchimpAccount:
    """Where and as whom to call Mailchimp."""

    api_key: str
    server: str
    # Overrides the SDK's host (`https://server.api.mailchimp.com/3.0`), e.g. the sandbox.
    api_url: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 120.0

    @property
    def key(self) -> str:
        """The account's name for limits and breakers; never the key itself."""
        return f"mailchimp:{self.server}"


def sdk_client(account: MailchimpAccount) -> Any:
    client = mailchimp_marketing.Client()
    client.set_config(
        {
            "api_key": account.api_key,
            "server": account.server,
            "timeout": (account.connect_timeout, account.read_timeout),
        }
    )
    if account.api_url:
        # set_config never touches host; replacing it after set_config is the SDK's only way.
        client.api_client.host = account.api_url.rstrip("/")
    return client


DEFAULT_POLICY = RetryPolicy(max_attempts=6, base_delay=0.2, max_delay=10.0)


class MailchimpApi:
    """Async calls to one Mailchimp account through the SDK.

    `call(name, fn)` runs `fn(client)` on the pool and returns the SDK's data (a dict) or
    None for a 204; it raises MailchimpError for every failure, or CircuitOpenError when the
    account's breaker is open.
    """

    def __init__(
        self,
        account: MailchimpAccount,
        *,
        max_in_flight: int = 10,
        policy: RetryPolicy = DEFAULT_POLICY,
        breakers: CircuitBreakers | None = None,
        tracer: trace.Tracer | None = None,
        client_factory: Callable[[MailchimpAccount], Any] = sdk_client,
    ) -> None:
        self.account = account
        self.policy = policy
        self.limiter = KeyedLimiter(max_in_flight)
        self.breakers = breakers or CircuitBreakers()
        self._tracer = tracer or trace.get_tracer(__name__)
        self._client = client_factory(account)
        self._executor = ThreadPoolExecutor(
            max_workers=max_in_flight, thread_name_prefix="mailchimp"
        )
        self.retries = 0
        self.calls = 0

    @property
    def breaker_state(self) -> BreakerState:
        return self.breakers.get(self.account.key).state

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def call(
        self, name: str, fn: Callable[[Any], T], *, policy: RetryPolicy | None = None
    ) -> T | None:
        """One logical call, `name` being its route template (e.g. `PUT /lists/{id}/members`).

        `policy` replaces the default retries, e.g. a single attempt for a health probe."""
        with self._tracer.start_as_current_span(
            f"mailchimp {name}",
            kind=SpanKind.CLIENT,
            attributes={"peer.service": "mailchimp", "cdp.mailchimp.operation": name},
        ) as span:
            attempts = 0

            def count_retry(attempt: int, error: BaseException, delay: float) -> None:
                self.retries += 1
                logger.debug("mailchimp %s failed (%s), retry %d in %.2f s", name, error,
                             attempt, delay)

            async def attempt() -> T | None:
                nonlocal attempts
                attempts += 1
                return await self._attempt(fn, retry=attempts > 1)

            try:
                result = await retry(
                    attempt,
                    policy=policy or self.policy,
                    retryable=lambda e: isinstance(e, MailchimpError) and e.retryable,
                    on_retry=count_retry,
                )
            except MailchimpError as error:
                span.set_attribute("cdp.mailchimp.attempts", attempts)
                if error.status is not None:
                    span.set_attribute("http.response.status_code", error.status)
                span.set_status(Status(StatusCode.ERROR, error.title))
                raise
            except CircuitOpenError:
                span.set_status(Status(StatusCode.ERROR, "circuit open"))
                raise
            span.set_attribute("cdp.mailchimp.attempts", attempts)
            return result

    async def _attempt(self, fn: Callable[[Any], T], *, retry: bool) -> T | None:
        breaker = self.breakers.get(self.account.key)
        async with self.limiter.hold(self.account.key, retry=retry):
            breaker.before_call()
            self.calls += 1
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(self._executor, self._invoke, fn)
            except MailchimpError as error:
                # Throttling says the account is busy, not that Mailchimp is failing.
                if error.retryable and not error.throttled:
                    breaker.record_failure()
                else:
                    breaker.record_neutral()
                raise
            except BaseException:
                breaker.release_probe()
                raise
            breaker.record_success()
            return result

    def _invoke(self, fn: Callable[[Any], T]) -> T | None:
        try:
            result = fn(self._client)
        except ApiClientError as error:
            raise _from_client_error(error) from None
        if isinstance(result, requests.Response):
            if not result.ok:
                raise _from_response(result)
            return None
        return result
