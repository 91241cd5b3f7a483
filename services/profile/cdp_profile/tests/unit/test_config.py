from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdp_mappings import ConfigError, apply_fields
from cdp_profile.config.loader import load_profile_config, parse_strategies
from cdp_profile.domain.strategies import StrategyName
from cdp_settings.platforms import KNOWN_PLATFORMS


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_strategies(textwrap.dedent(text), "s.yaml", platforms=KNOWN_PLATFORMS)
    return [str(problem) for problem in caught.value.problems]


def test_the_packaged_defaults_load_and_map_the_briefs_examples() -> None:
    config = load_profile_config(
        strategies_file=None, mappings_file=None, platforms=KNOWN_PLATFORMS
    )
    book = config.strategies
    assert book.for_path("user.tags").name is StrategyName.MERGE_ARRAYS
    assert book.for_path("preferences").name is StrategyName.DEEP_MERGE
    assert book.for_path("customer.lifetime_value").name is StrategyName.HIGHEST_VALUE
    assert book.for_path("user.firstName").sources[0] == "crm"
    assert book.for_path("anything.else").name is StrategyName.MOST_RECENT
    record = apply_fields(
        config.mappings.into("mailchimp", preferred_source="crm"),
        {
            "user": {"firstName": "Ada", "email": "Ada@Example.com", "tags": ["vip"]},
            "account": {"companyName": "AE"},
            "customer": {"totalSpent": 99.5, "orderCount": 3, "lastOrderDate": "2026-11-30"},
        },
    )
    assert record.payload == {
        "email_address": "ada@example.com",
        "merge_fields": {
            "FNAME": "Ada",
            "COMPANY": "AE",
            "TOTSPENT": 99.5,
            "ORDCOUNT": 3,
            "LASTORD": "2026-11-30",
        },
        "tags": [{"name": "vip", "status": "active"}],
    }


def test_an_unknown_strategy_is_rejected_naming_file_line_and_rule() -> None:
    assert problems(
        """\
        default: most_recent
        fields:
          - path: user.email
            strategy: newest
        """
    ) == [
        "s.yaml:4: rule 1 (user.email): strategy: unknown strategy 'newest' (most_recent, "
        "source_priority, merge_arrays, deep_merge, highest_value, first_seen, non_empty)"
    ]


def test_source_priority_needs_known_distinct_platforms() -> None:
    found = problems(
        """\
        fields:
          - {path: a, strategy: source_priority}
          - {path: b, strategy: source_priority, sources: [crm, crmm, crm]}
          - {path: c, strategy: most_recent, sources: [crm]}
        """
    )
    assert found[0].startswith("s.yaml:2: rule 1 (a): sources: source_priority needs a list")
    assert "s.yaml:3: rule 2 (b): sources: unknown platform 'crmm'" in found[1]
    assert found[2] == "s.yaml:3: rule 2 (b): sources: crm listed twice"
    assert (
        found[3]
        == "s.yaml:4: rule 3 (c): sources: only source_priority takes sources, not most_recent"
    )


def test_patterns_of_the_wrong_shape_and_duplicates_are_rejected() -> None:
    found = problems(
        """\
        fields:
          - {path: "user.**.email", strategy: most_recent}
          - {path: "user email", strategy: most_recent}
          - {path: user.tags, strategy: merge_arrays}
          - {path: user.tags, strategy: most_recent, typo: 1}
          - {path: user.tags, strategy: most_recent}
        """
    )
    assert found == [
        "s.yaml:2: rule 1 (user.**.email): path: 'user.**.email': `**` may only end a path",
        "s.yaml:3: rule 2 (user email): path: 'user email': segment 'user email' must be a "
        "field name (letters, digits, '_', '-'), `*` or a final `**`",
        "s.yaml:5: rule 4 (user.tags): unknown key 'typo' (expected path, strategy, sources)",
        "s.yaml:6: rule 5 (user.tags): path: 'user.tags' already has a rule on line 4",
    ]


def test_a_bad_override_file_reports_both_files_problems(tmp_path: Path) -> None:
    strategies = tmp_path / "strategies.yaml"
    strategies.write_text("default: newest\n")
    mappings = tmp_path / "mappings.yaml"
    mappings.write_text(
        "mappings:\n  - source: crm\n    target: mailchimp\n    fields:\n"
        "      - {from: user.firstName, to: merge_fields.FIRSTNAME_X}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_profile_config(
            strategies_file=strategies, mappings_file=mappings, platforms=KNOWN_PLATFORMS
        )
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{strategies}:1: default: strategy: unknown strategy 'newest'")
    assert lines[1].startswith(f"{mappings}:5: mapping crm -> mailchimp, entry 1")
    assert "has 11 characters" in lines[1]
