"""The sandbox's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from cdp_settings import Secret, setting

DEFAULT_PORT = 50160
# What `cdp up` and the tests give the connector when they start a sandbox: not a secret,
# the sandbox exists only on this machine.
SANDBOX_API_KEY = "0123456789abcdef0123456789abcdef-us1"


@dataclass(frozen=True)
class SandboxSettings:
    host: str = setting("MAILCHIMP_SANDBOX_HOST", default="127.0.0.1", doc="address to listen on")
    port: int = setting("MAILCHIMP_SANDBOX_PORT", default=DEFAULT_PORT, doc="port to listen on")
    api_key: Secret = setting(
        "MAILCHIMP_SANDBOX_API_KEY",
        default=Secret(SANDBOX_API_KEY),
        doc="the one API key the sandbox accepts (Basic auth password or Bearer token)",
    )
    list_id: str = setting(
        "MAILCHIMP_SANDBOX_LIST_ID", default="c0ffee0001", doc="id of the audience it starts with"
    )
    double_optin: bool = setting(
        "MAILCHIMP_SANDBOX_DOUBLE_OPTIN",
        default=False,
        doc="whether that audience is double opt-in",
    )
    latency_ms: float = setting(
        "MAILCHIMP_SANDBOX_LATENCY_MS", default=0.0, doc="latency added to every API call"
    )
    validate_webhook_urls: bool = setting(
        "MAILCHIMP_SANDBOX_VALIDATE_WEBHOOKS",
        default=True,
        doc="send the validator's GET to a webhook URL before accepting it",
    )
    log_level: str = setting("CDP_LOG_LEVEL", default="INFO")
    log_format: str = setting("CDP_LOG_FORMAT", default="json", doc="json or text")
