from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from mailchimp_marketing.api_client import ApiClientError

from cdp_mailchimp_connector.adapters.mailchimp_api import (
    MailchimpAccount,
    MailchimpApi,
    MailchimpError,
)
from cdp_resilience import CircuitBreakers, CircuitOpenError, RetryPolicy
from cdp_resilience.breaker import BreakerSettings, BreakerState


def state_of(owner: object, attribute: str) -> BreakerState:
    """Read through a function: mypy would otherwise narrow the property between reads."""
    state: BreakerState = getattr(owner, attribute)
    return state


ACCOUNT = MailchimpAccount(api_key="secret-key-us6", server="us6")


def bodiless(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = b""
    return response


def problem(status: int, title: str, detail: str = "") -> ApiClientError:
    return ApiClientError(json.dumps({"status": status, "title": title, "detail": detail}),
                          status)


def api(**kwargs: Any) -> MailchimpApi:
    return MailchimpApi(
        ACCOUNT,
        policy=RetryPolicy(max_attempts=kwargs.pop("attempts", 4), base_delay=0.0),
        client_factory=lambda _account: object(),
        **kwargs,
    )


def scripted(*outcomes: Any) -> Any:
    remaining = list(outcomes)

    def call(_client: Any) -> Any:
        outcome = remaining.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call


async def test_429_bodiless_replies_and_network_errors_are_retried_until_success() -> None:
    mailchimp = api()
    result = await mailchimp.call("GET /ping", scripted(
        problem(429, "Too Many Requests"),
        bodiless(429),
        ApiClientError(requests.ConnectionError("refused")),
        {"health_status": "ok"},
    ))
    assert result == {"health_status": "ok"}
    assert mailchimp.retries == 3


async def test_a_204_response_object_is_success_without_data() -> None:
    assert await api().call("POST tags", scripted(bodiless(204))) is None


@pytest.mark.parametrize("title", ["Member In Compliance State", "Forgotten Email Not Subscribed"])
async def test_compliance_refusals_are_never_retried_and_hide_the_email(title: str) -> None:
    mailchimp = api()
    with pytest.raises(MailchimpError) as caught:
        await mailchimp.call("PUT member", scripted(
            problem(400, title, "ada@example.com is in a compliance state")))
    assert caught.value.compliance and not caught.value.retryable
    assert mailchimp.retries == 0
    assert "ada@example.com" not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "status", "retryable"),
    [
        (ApiClientError({"title": "Invalid Resource", "detail": "bad"}, 400), 400, False),
        (ApiClientError("<html>502 Bad Gateway</html>", 502), 502, True),
        (ApiClientError(requests.Timeout("read timed out")), None, True),
    ],
)
async def test_every_shape_of_sdk_error_is_normalised(
    error: ApiClientError, status: int | None, retryable: bool
) -> None:
    with pytest.raises(MailchimpError) as caught:
        await api(attempts=1).call("x", scripted(error))
    assert caught.value.status == status and caught.value.retryable is retryable


async def test_a_bodiless_403_is_load_shedding_but_a_403_with_a_body_is_final() -> None:
    with pytest.raises(MailchimpError) as shed:
        await api(attempts=1).call("x", scripted(bodiless(403)))
    with pytest.raises(MailchimpError) as forbidden:
        await api(attempts=1).call("x", scripted(problem(403, "Forbidden")))
    assert shed.value.retryable and not forbidden.value.retryable


async def test_repeated_5xx_open_the_circuit_but_throttling_does_not() -> None:
    breakers = CircuitBreakers(BreakerSettings(failure_threshold=3, reset_timeout=60))
    mailchimp = api(attempts=3, breakers=breakers)
    with pytest.raises(MailchimpError):
        await mailchimp.call("x", scripted(*(problem(429, "Too Many Requests"),) * 3))
    assert state_of(mailchimp, "breaker_state") is BreakerState.CLOSED
    with pytest.raises(MailchimpError):
        await mailchimp.call("x", scripted(*(problem(500, "Internal Server Error"),) * 3))
    assert state_of(mailchimp, "breaker_state") is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        await mailchimp.call("x", scripted({"ok": True}))


def test_the_api_key_never_shows_in_the_account_key() -> None:
    assert "secret" not in ACCOUNT.key
