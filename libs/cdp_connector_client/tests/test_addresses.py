from __future__ import annotations

from cdp_connector_client import connector_addresses, connector_variable, service_variable


def test_an_explicit_connector_variable_wins_over_the_service_address() -> None:
    addresses, problems = connector_addresses(
        ["mailchimp", "crm", "shopify"],
        {
            "CDP_CONNECTOR_MAILCHIMP_ADDR": "10.0.0.5:50061",
            "CDP_CRM_ADDR": "crm-connector:7000",
            "CDP_CONNECTOR_CRM_ADDR": " crm.internal:50070 ",
        },
    )
    assert addresses == (("mailchimp", "10.0.0.5:50061"), ("crm", "crm.internal:50070"))
    assert problems == []


def test_the_address_cdp_up_gives_a_connector_service_is_the_fallback() -> None:
    addresses, _ = connector_addresses(["mailchimp"], {"CDP_MAILCHIMP_ADDR": "127.0.0.1:50061"})
    assert addresses == (("mailchimp", "127.0.0.1:50061"),)


def test_unix_sockets_and_bracketed_ipv6_are_addresses() -> None:
    addresses, problems = connector_addresses(
        ["crm", "web"],
        {"CDP_CONNECTOR_CRM_ADDR": "unix:/run/crm.sock", "CDP_CONNECTOR_WEB_ADDR": "[::1]:7000"},
    )
    assert dict(addresses) == {"crm": "unix:/run/crm.sock", "web": "[::1]:7000"}
    assert problems == []


def test_every_malformed_address_is_named_with_its_variable_and_left_out() -> None:
    addresses, problems = connector_addresses(
        ["shopify", "support", "mailchimp"],
        {
            "CDP_CONNECTOR_SHOPIFY_ADDR": "shop",
            "CDP_SUPPORT_ADDR": "support desk:1",
            "CDP_MAILCHIMP_ADDR": "127.0.0.1:50061",
        },
    )
    assert problems == [
        "CDP_CONNECTOR_SHOPIFY_ADDR='shop' is not host:port",
        "CDP_SUPPORT_ADDR='support desk:1' is not host:port",
    ]
    assert addresses == (("mailchimp", "127.0.0.1:50061"),)


def test_a_hyphenated_platform_names_an_underscored_variable() -> None:
    assert connector_variable("point-of-sale") == "CDP_CONNECTOR_POINT_OF_SALE_ADDR"
    assert service_variable("point-of-sale") == "CDP_POINT_OF_SALE_ADDR"
