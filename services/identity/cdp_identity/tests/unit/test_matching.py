from __future__ import annotations

import pytest

from cdp_identity.domain.matching import (
    DEFAULT_ODDS,
    PersonAttributes,
    Scorer,
    blocking_keys,
    normalize_attributes,
)

ADA = PersonAttributes(
    given_name="ada", family_name="lovelace", birth_date="1815-12-10",
    street_address="12 st james square", locality="london", postcode="sw1y 4jh", region="ldn",
)
SCORER = Scorer(DEFAULT_ODDS, prior=1e-4)


def test_the_same_person_with_typos_scores_above_the_threshold() -> None:
    noisy = PersonAttributes(
        given_name="ada", family_name="lovelacee", birth_date="1815-10-12",
        street_address="12 st. james sq", locality="londn", postcode="sw1y 4jh", region="ldn",
    )
    score = SCORER.score(ADA, noisy)
    assert score.confidence >= 0.85
    assert {"given_name", "family_name", "postcode"} <= set(score.agreeing)


def test_a_different_person_with_one_shared_field_scores_near_zero() -> None:
    other = PersonAttributes(given_name="grace", family_name="hopper", birth_date="1906-12-09",
                             locality="london", postcode="10001", region="ny")
    assert SCORER.score(ADA, other).confidence < 0.01


def test_swapped_given_and_family_names_still_match() -> None:
    swapped = PersonAttributes(given_name="lovelace", family_name="ada",
                               birth_date="1815-12-10", postcode="sw1y 4jh")
    assert SCORER.score(ADA, swapped).confidence >= 0.85


def test_missing_fields_count_neither_for_nor_against() -> None:
    partial = PersonAttributes(given_name="ada", family_name="lovelace")
    full_score = SCORER.score(ADA, ADA).weight
    partial_score = SCORER.score(ADA, partial).weight
    assert 0 < partial_score < full_score


def test_a_typo_in_one_name_leaves_other_blocking_keys_shared() -> None:
    typo = PersonAttributes(given_name="ada", family_name="lovlace", birth_date="1815-12-10",
                            postcode="sw1y 4jh")
    assert blocking_keys(ADA) & blocking_keys(typo)


def test_attributes_are_normalised_and_birth_dates_checked() -> None:
    cleaned, violations = normalize_attributes(
        PersonAttributes(given_name="  Ada  ", family_name="LOVE  LACE", birth_date="1815-13-40")
    )
    assert cleaned.given_name == "ada" and cleaned.family_name == "love lace"
    assert [v.field for v in violations] == ["attributes.birth_date"]


@pytest.mark.parametrize("field", ["given_name", "street_address"])
def test_oversized_attributes_are_rejected(field: str) -> None:
    _, violations = normalize_attributes(PersonAttributes(**{field: "x" * 201}))
    assert [v.field for v in violations] == [f"attributes.{field}"]
