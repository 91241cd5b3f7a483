from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdp_mappings import (
    ConfigError,
    FieldType,
    apply_fields,
    load_mappings,
    parse_mappings,
)

BRIEF_EXAMPLES = textwrap.dedent(
    """\
    mappings:
      - source: crm
        target: mailchimp
        fields:
          - from: user.firstName
            to: merge_fields.FNAME
          - from: user.email
            to: email_address
            transform: [trim, lowercase]
          - from: account.companyName
            to: merge_fields.COMPANY
          - from: user.tags
            to: tags
            transform: mailchimp_tags
      - source: ecommerce
        target: mailchimp
        fields:
          - from: customer.totalSpent
            to: merge_fields.TOTSPENT
            transform: number
          - from: customer.orderCount
            to: merge_fields.ORDCOUNT
            transform: integer
          - from: customer.lastOrderDate
            to: merge_fields.LASTORD
            transform: date
    """
)

PROFILE = {
    "user": {"firstName": "Ada", "email": " Ada@Example.com ", "tags": ["vip", "beta", "vip"]},
    "account": {"companyName": "Analytical Engines"},
    "customer": {"totalSpent": 1250.5, "orderCount": 7.0, "lastOrderDate": "2026-11-30T18:04:00Z"},
}


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_mappings(text, "m.yaml")
    return [str(problem) for problem in caught.value.problems]


def one_entry(entry: str, *, target: str = "mailchimp") -> str:
    body = textwrap.indent(textwrap.dedent(entry), " " * 6)
    return f"mappings:\n  - source: crm\n    target: {target}\n    fields:\n{body}"


def test_the_briefs_crm_and_ecommerce_mappings_produce_mailchimp_members() -> None:
    mappings = parse_mappings(BRIEF_EXAMPLES, "m.yaml")
    crm = apply_fields(mappings.into("mailchimp", preferred_source="crm"), PROFILE)
    assert crm.payload == {
        "merge_fields": {
            "FNAME": "Ada",
            "COMPANY": "Analytical Engines",
            "TOTSPENT": 1250.5,
            "ORDCOUNT": 7,
            "LASTORD": "2026-11-30",
        },
        "email_address": "ada@example.com",
        "tags": [{"name": "vip", "status": "active"}, {"name": "beta", "status": "active"}],
    }
    assert crm.skipped == []


def test_merge_fields_to_create_carry_the_type_their_transform_implies() -> None:
    mappings = parse_mappings(BRIEF_EXAMPLES, "m.yaml")
    types = {f.tag: f.field_type for f in mappings.platform_fields["mailchimp"]}
    assert types == {
        "FNAME": FieldType.TEXT,
        "COMPANY": FieldType.TEXT,
        "TOTSPENT": FieldType.NUMBER,
        "ORDCOUNT": FieldType.NUMBER,
        "LASTORD": FieldType.DATE,
    }


def test_the_triggering_sources_mapping_wins_where_two_write_the_same_path() -> None:
    text = textwrap.dedent(
        """\
        mappings:
          - source: crm
            target: mailchimp
            fields:
              - {from: user.firstName, to: merge_fields.FNAME}
          - source: support
            target: mailchimp
            fields:
              - {from: contact.givenName, to: merge_fields.FNAME}
        """
    )
    mappings = parse_mappings(text, "m.yaml")
    document = {"user": {"firstName": "Ada"}, "contact": {"givenName": "Augusta"}}
    by_support = apply_fields(mappings.into("mailchimp", preferred_source="support"), document)
    by_crm = apply_fields(mappings.into("mailchimp", preferred_source="crm"), document)
    assert by_support.payload == {"merge_fields": {"FNAME": "Augusta"}}
    assert by_crm.payload == {"merge_fields": {"FNAME": "Ada"}}


def test_missing_values_are_left_out_and_bad_values_skipped_without_quoting_them() -> None:
    mappings = parse_mappings(BRIEF_EXAMPLES, "m.yaml")
    record = apply_fields(
        mappings.into("mailchimp"), {"customer": {"orderCount": "seven", "totalSpent": None}}
    )
    assert record.payload == {}
    (skipped,) = record.skipped
    assert (skipped.source, skipped.target) == ("customer.orderCount", "merge_fields.ORDCOUNT")
    assert "seven" not in skipped.reason and "non-numeric string" in skipped.reason


def test_an_unknown_transform_is_rejected_naming_file_line_and_entry() -> None:
    (problem,) = problems_of(
        one_entry(
            """\
            - from: user.firstName
              to: merge_fields.FNAME
              transform: titlecase
            """
        )
    )
    assert problem.startswith("m.yaml:7: mapping crm -> mailchimp, entry 1 ")
    assert "(user.firstName -> merge_fields.FNAME)" in problem
    assert "unknown transform 'titlecase'" in problem


def test_a_merge_tag_over_ten_characters_is_rejected_naming_file_line_and_entry() -> None:
    (problem,) = problems_of(
        one_entry(
            """\
            - from: user.firstName
              to: merge_fields.FNAME
            - from: account.companyName
              to: merge_fields.COMPANYNAME
            """
        )
    )
    assert problem.startswith("m.yaml:8: mapping crm -> mailchimp, entry 2 ")
    assert "merge tag 'COMPANYNAME' has 11 characters; Mailchimp allows at most 10" in problem


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "- {from: user..firstName, to: merge_fields.FNAME}",
            "from: 'user..firstName' has an empty segment",
        ),
        (
            "- {from: user.first name, to: merge_fields.FNAME}",
            "segment 'first name' may contain only",
        ),
        ("- {from: user.firstName, to: merge_fields.FNAME.x}", "must be merge_fields.<TAG>"),
        ("- {from: user.firstName, to: firstName}", "is not a Mailchimp member field"),
        ("- {from: user.firstName, to: merge_fields.fname}", "must be upper-case letters"),
        ("- {from: user.tags, to: tags}", "end the entry with transform: mailchimp_tags"),
        ("- {from: [user], to: email_address}", "from: must be a dot path string, not list"),
        ("- {to: email_address}", "from: is required"),
    ],
)
def test_paths_of_the_wrong_shape_are_rejected_at_load(entry: str, expected: str) -> None:
    (problem,) = problems_of(one_entry(entry))
    assert problem.startswith("m.yaml:5: mapping crm -> mailchimp, entry 1")
    assert expected in problem


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    problems = problems_of(
        one_entry(
            """\
            - {from: user.firstName, to: merge_fields.FIRST_NAME_X, tranform: trim}
            - {from: user.email, to: email_address, transform: nope}
            - {from: user.lastName, to: email_address}
            """
        )
    )
    joined = "\n".join(problems)
    assert "unknown key 'tranform'" in joined
    assert "has 12 characters" in joined
    assert "unknown transform 'nope'" in joined
    assert len(problems) == 3


def test_a_second_entry_writing_the_same_target_path_is_rejected() -> None:
    (problem,) = problems_of(
        one_entry(
            """\
            - {from: user.email, to: email_address}
            - {from: user.workEmail, to: email_address}
            """
        )
    )
    assert "m.yaml:6: mapping crm -> mailchimp, entry 2" in problem
    assert "already written by the entry on line 5" in problem


def test_nested_target_paths_that_would_overwrite_each_other_are_rejected() -> None:
    (problem,) = problems_of(
        one_entry(
            """\
            - {from: user, to: profile}
            - {from: user.email, to: profile.email}
            """,
            target="crm_archive",
        ).replace("target: crm_archive", "target: support")
    )
    assert "'profile.email' overlaps 'profile'" in problem


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("  - source: crm\n    target: crm\n", "source and target are the same platform"),
        ("  - source: crm\n    target: mailchimpp\n", "unknown platform 'mailchimpp'"),
        ("  - target: mailchimp\n", "source: is required"),
    ],
)
def test_platform_pairs_must_name_two_known_platforms(header: str, expected: str) -> None:
    text = f"mappings:\n{header}    fields:\n      - {{from: a.b, to: c}}\n"
    (problem,) = problems_of(text)
    assert expected in problem


def test_a_pair_mapped_twice_is_rejected_with_the_first_line() -> None:
    entry = "    fields:\n      - {from: user.firstName, to: merge_fields.FNAME}\n"
    text = f"mappings:\n  - source: crm\n    target: mailchimp\n{entry}"
    text += f"  - source: crm\n    target: mailchimp\n{entry}"
    (problem,) = problems_of(text)
    assert problem == "m.yaml:6: mapping crm -> mailchimp: this pair is already mapped on line 2"


def test_one_merge_tag_cannot_have_two_types() -> None:
    text = textwrap.dedent(
        """\
        mappings:
          - source: crm
            target: mailchimp
            fields:
              - {from: customer.ltv, to: merge_fields.LTV, transform: number}
          - source: ecommerce
            target: mailchimp
            fields:
              - {from: customer.ltv, to: merge_fields.LTV}
        """
    )
    (problem,) = problems_of(text)
    assert "LTV is text here but number on line 5" in problem


def test_yaml_syntax_errors_and_duplicate_keys_name_their_line() -> None:
    (syntax,) = problems_of("mappings:\n  - source: crm\n    target: [mailchimp\n")
    (duplicate,) = problems_of(
        "mappings:\n  - source: crm\n    source: shopify\n    target: mailchimp\n"
        "    fields: [{from: a, to: b}]\n"
    )
    assert syntax.startswith("m.yaml:4: YAML:")
    assert duplicate.startswith("m.yaml:3: YAML: duplicate key 'source' (first on line 2)")


def test_an_unreadable_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: cannot read the file"):
        load_mappings(tmp_path / "missing.yaml")


def test_mailchimp_tags_accept_one_name_or_a_list_and_drop_blanks() -> None:
    text = one_entry("- {from: user.tags, to: tags, transform: mailchimp_tags}")
    entries = parse_mappings(text, "m.yaml").into("mailchimp")
    single = apply_fields(entries, {"user": {"tags": "vip"}})
    listed = apply_fields(entries, {"user": {"tags": [" vip ", "", "new"]}})
    assert single.payload == {"tags": [{"name": "vip", "status": "active"}]}
    assert listed.payload["tags"] == [
        {"name": "vip", "status": "active"},
        {"name": "new", "status": "active"},
    ]
