"""Probabilistic matching on personal attributes: blocking and Fellegi-Sunter scoring.

Used only when no identifier matches deterministically and the caller allows it.

Blocking keeps candidates few: a customer is a candidate when it shares at least one
composite key with the request, each key two attributes wide (the Soundex code of a name
plus an initial, a postcode or a birth date), so one typo anywhere still leaves most keys
intact while a key stays selective in a large population.

Scoring follows Fellegi and Sunter: each compared field contributes log2(m / u) for its
agreement level, where m is the chance of that level between records of the same person
and u between records of different people; the sum of weights plus the prior odds gives the
posterior probability of a match, reported as the confidence in [0, 1]. A field missing on
either side contributes nothing. Partial agreement levels (a typo, swapped day and month)
carry their own m and u, which is what makes the scoring forgiving of noisy data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import date

import jellyfish
from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler

from cdp_errors import FieldViolation

MAX_ATTRIBUTE_LENGTH = 200

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class PersonAttributes:
    """Normalised personal attributes: lower case, single spaces, birth date as YYYY-MM-DD."""

    given_name: str = ""
    family_name: str = ""
    birth_date: str = ""
    street_address: str = ""
    locality: str = ""
    postcode: str = ""
    region: str = ""

    def is_empty(self) -> bool:
        return self is NO_ATTRIBUTES or not any(vars(self).values())

    def updated_with(self, newer: PersonAttributes) -> PersonAttributes:
        """These attributes with every non-empty value of `newer` taking precedence."""
        changes = {name: value for name, value in vars(newer).items() if value}
        return replace(self, **changes)


# The attributes of a request that carries none. Commands share this one instance, so the
# checks a batch makes per item are an identity comparison, not a field-by-field one.
NO_ATTRIBUTES = PersonAttributes()


def _clean(value: str) -> str:
    return _SPACES.sub(" ", value.strip().lower())


def normalize_attributes(
    raw: PersonAttributes, field: str = "attributes"
) -> tuple[PersonAttributes, list[FieldViolation]]:
    """Cleans every attribute and checks the birth date is a real calendar date."""
    if raw is NO_ATTRIBUTES or raw == NO_ATTRIBUTES:
        return raw, []
    violations: list[FieldViolation] = []
    cleaned: dict[str, str] = {}
    for name, value in vars(raw).items():
        text = _clean(value)
        if len(text) > MAX_ATTRIBUTE_LENGTH:
            violations.append(FieldViolation(
                f"{field}.{name}",
                f"is {len(text)} characters long; the limit is {MAX_ATTRIBUTE_LENGTH}",
            ))
            text = ""
        cleaned[name] = text
    if cleaned["birth_date"]:
        try:
            cleaned["birth_date"] = date.fromisoformat(cleaned["birth_date"]).isoformat()
        except ValueError:
            violations.append(FieldViolation(
                f"{field}.birth_date", "is not a calendar date in the form YYYY-MM-DD"
            ))
            cleaned["birth_date"] = ""
    return PersonAttributes(**cleaned), violations


def _soundex(value: str) -> str:
    letters = re.sub(r"[^a-z]", "", value)
    return jellyfish.soundex(letters) if letters else ""


def blocking_keys(person: PersonAttributes) -> set[str]:
    """The composite keys under which a person is filed and looked up."""
    family, given = _soundex(person.family_name), _soundex(person.given_name)
    birth, postcode = person.birth_date, person.postcode
    keys: set[str] = set()
    if family and person.given_name:
        keys.add(f"fn:{family}:{person.given_name[0]}")
    if given and person.family_name:
        keys.add(f"gn:{given}:{person.family_name[0]}")
    if given and postcode:
        keys.add(f"gp:{given}:{postcode}")
    if family and postcode:
        keys.add(f"fp:{family}:{postcode}")
    if birth and family:
        keys.add(f"bf:{birth}:{family}")
    if birth and given:
        keys.add(f"bg:{birth}:{given}")
    if birth and postcode:
        keys.add(f"bp:{birth}:{postcode}")
    return keys


@dataclass(frozen=True)
class LevelOdds:
    """m and u of one field at agreement levels (full, partial, none)."""

    m: tuple[float, float, float]
    u: tuple[float, float, float]

    def weight(self, level: int | None) -> float:
        if level is None:
            return 0.0
        index = 2 - level
        return math.log2(self.m[index] / self.u[index])


# m: how often the level occurs between two records of one person (typos, moves, missing
# data); u: how often between two different people in a population. Chosen from what record
# linkage literature reports for person data, not fitted to any benchmark.
DEFAULT_ODDS: dict[str, LevelOdds] = {
    "given_name": LevelOdds(m=(0.80, 0.12, 0.08), u=(0.005, 0.03, 0.965)),
    "family_name": LevelOdds(m=(0.82, 0.11, 0.07), u=(0.002, 0.02, 0.978)),
    "birth_date": LevelOdds(m=(0.85, 0.08, 0.07), u=(0.0005, 0.002, 0.9975)),
    "postcode": LevelOdds(m=(0.85, 0.05, 0.10), u=(0.002, 0.01, 0.988)),
    "locality": LevelOdds(m=(0.80, 0.10, 0.10), u=(0.002, 0.01, 0.988)),
    "street_address": LevelOdds(m=(0.75, 0.15, 0.10), u=(0.001, 0.01, 0.989)),
    "region": LevelOdds(m=(0.90, 0.0001, 0.0999), u=(0.2, 0.0001, 0.7999)),
}


def _similarity_level(left: str, right: str, high: float = 0.92, low: float = 0.82) -> int | None:
    if not left or not right:
        return None
    similarity = JaroWinkler.similarity(left, right)
    return 2 if similarity >= high else 1 if similarity >= low else 0


def _one_edit_apart(left: str, right: str) -> bool:
    return len(left) == len(right) and sum(a != b for a, b in zip(left, right, strict=True)) == 1


def _birth_date_level(left: str, right: str) -> int | None:
    if not left or not right:
        return None
    if left == right:
        return 2
    year_l, month_l, day_l = left.split("-")
    year_r, month_r, day_r = right.split("-")
    if year_l == year_r and month_l == day_r and day_l == month_r:
        return 1
    return 1 if _one_edit_apart(left, right) else 0


def _postcode_level(left: str, right: str) -> int | None:
    if not left or not right:
        return None
    if left == right:
        return 2
    return 1 if _one_edit_apart(left, right) else 0


def _address_level(left: str, right: str) -> int | None:
    if not left or not right:
        return None
    score = fuzz.token_set_ratio(left, right) / 100
    return 2 if score >= 0.9 else 1 if score >= 0.7 else 0


def _exact_level(left: str, right: str) -> int | None:
    if not left or not right:
        return None
    return 2 if left == right else 0


@dataclass(frozen=True)
class MatchScore:
    confidence: float
    weight: float
    # Fields that agreed fully or partly: what carried the decision.
    agreeing: tuple[str, ...]


@dataclass(frozen=True)
class Scorer:
    """Fellegi-Sunter scoring of a request against one candidate.

    Args:
        prior: the probability, before comparing anything, that a candidate found through
            blocking is the same person.
    """

    odds: dict[str, LevelOdds]
    prior: float = 1e-4

    def levels(self, left: PersonAttributes, right: PersonAttributes) -> dict[str, int | None]:
        given = _similarity_level(left.given_name, right.given_name)
        family = _similarity_level(left.family_name, right.family_name)
        if given is not None and family is not None and given + family <= 1:
            # Given and family name entered the other way round.
            given_swapped = _similarity_level(left.given_name, right.family_name)
            family_swapped = _similarity_level(left.family_name, right.given_name)
            if (given_swapped is not None and family_swapped is not None
                    and given_swapped + family_swapped > given + family):
                given, family = given_swapped, family_swapped
        return {
            "given_name": given,
            "family_name": family,
            "birth_date": _birth_date_level(left.birth_date, right.birth_date),
            "postcode": _postcode_level(left.postcode, right.postcode),
            "locality": _similarity_level(left.locality, right.locality),
            "street_address": _address_level(left.street_address, right.street_address),
            "region": _exact_level(left.region, right.region),
        }

    def score(self, left: PersonAttributes, right: PersonAttributes) -> MatchScore:
        levels = self.levels(left, right)
        weight = sum(self.odds[name].weight(level) for name, level in levels.items())
        log_odds = weight + math.log2(self.prior / (1 - self.prior))
        confidence = 1.0 / (1.0 + 2.0 ** (-log_odds)) if log_odds > -60 else 0.0
        agreeing = tuple(name for name, level in levels.items() if level)
        return MatchScore(confidence=confidence, weight=weight, agreeing=agreeing)
