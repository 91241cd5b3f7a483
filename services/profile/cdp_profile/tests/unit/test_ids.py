from __future__ import annotations

import uuid

import pytest

from cdp_profile.domain.ids import check_customer_id

CUSTOMER = uuid.UUID("5d459211-6c7b-4c8e-a8dc-63d515e47204")


@pytest.mark.parametrize(
    "raw",
    [
        str(CUSTOMER),
        str(CUSTOMER).upper(),
        f"  {CUSTOMER}  ",
        f"{{{CUSTOMER}}}",
        CUSTOMER.hex,
        f"urn:uuid:{CUSTOMER}",
    ],
)
def test_every_spelling_of_a_customer_id_comes_out_canonical(raw: str) -> None:
    assert check_customer_id(raw, "customer_id") == (str(CUSTOMER), None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "is required"),
        ("   ", "is required"),
        ("42", "is not a customer id (a UUID)"),
        (f"{CUSTOMER}\n{CUSTOMER}", "is not a customer id (a UUID)"),
        (str(CUSTOMER)[:-1] + "g", "is not a customer id (a UUID)"),
    ],
)
def test_anything_else_is_a_violation_naming_the_field(raw: str, problem: str) -> None:
    customer_id, violation = check_customer_id(raw, "fragments[3].customer_id")
    assert customer_id == "" and violation is not None
    assert (violation.field, violation.description) == ("fragments[3].customer_id", problem)
