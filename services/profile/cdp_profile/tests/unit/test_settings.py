from __future__ import annotations

import pytest

from cdp_profile.settings import load_profile_settings
from cdp_settings import SettingsError

REQUIRED = {"DATABASE_URL": "postgresql://u@h/db", "NATS_URL": "nats://127.0.0.1:4222"}


def test_connector_addresses_come_from_per_platform_variables() -> None:
    settings = load_profile_settings(
        {
            **REQUIRED,
            "CDP_CONNECTOR_MAILCHIMP_ADDR": "10.0.0.5:50061",
            "CDP_CRM_ADDR": "crm-connector:7000",
            "CDP_CONNECTOR_CRM_ADDR": "crm.internal:50070",
            "CDP_IDENTITY_ADDR": "identity:50051",
        }
    )
    assert settings.connector_address("mailchimp") == "10.0.0.5:50061"
    assert settings.connector_address("crm") == "crm.internal:50070"
    assert settings.connector_address("shopify") is None
    assert settings.identity_address == "identity:50051"


def test_the_address_cdp_up_gives_a_connector_service_is_used_when_no_explicit_one() -> None:
    settings = load_profile_settings({**REQUIRED, "CDP_MAILCHIMP_ADDR": "127.0.0.1:50061"})
    assert settings.connector_address("mailchimp") == "127.0.0.1:50061"


def test_a_malformed_address_names_its_variable() -> None:
    with pytest.raises(SettingsError, match="CDP_CONNECTOR_SHOPIFY_ADDR='shop' is not host:port"):
        load_profile_settings({**REQUIRED, "CDP_CONNECTOR_SHOPIFY_ADDR": "shop"})
