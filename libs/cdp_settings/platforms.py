"""The platform names the whole suite agrees on, and the one setting that overrides them."""

from __future__ import annotations

from typing import Any

from cdp_settings import setting

# Sources and targets every service accepts by default: the connectors' platforms and the
# roles events are routed to. CDP_PLATFORMS replaces the list for a deployment.
KNOWN_PLATFORMS: tuple[str, ...] = (
    "mailchimp",
    "crm",
    "salesforce",
    "shopify",
    "ecommerce",
    "support",
    "analytics",
    "web",
    "mobile",
    "advertising",
    "personalization",
)


def platforms_setting() -> Any:
    """The CDP_PLATFORMS settings field, the same in every service."""
    return setting("CDP_PLATFORMS", default=KNOWN_PLATFORMS,
                   doc="platform names the suite accepts")
