from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_profile.domain.model import FieldState, JsonValue, Observation, to_micros
from cdp_profile.domain.strategies import (
    Strategy,
    StrategyBook,
    StrategyName,
    StrategyRule,
    canonical,
    same_value,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float) -> int:
    return to_micros(T0 + timedelta(hours=hours))


def fold_all(strategy: Strategy, observations: list[Observation]) -> FieldState | None:
    state: FieldState | None = None
    for observation in observations:
        state = strategy.fold("field", state, observation)
    return state


def obs(value: JsonValue, source: str, hours: float, seq: int) -> Observation:
    return Observation(value, source, at(hours), seq)


MOST_RECENT = Strategy(StrategyName.MOST_RECENT)
PRIORITY = Strategy(StrategyName.SOURCE_PRIORITY, ("crm", "ecommerce"))


def test_most_recent_takes_the_newest_observed_value() -> None:
    state = fold_all(MOST_RECENT, [obs("Ada", "crm", 1, 1), obs("Augusta", "support", 2, 2)])
    assert state is not None
    assert (state.value, state.source, state.at) == ("Augusta", "support", at(2))
    assert state.reason == "newest observation (by observed time)"


def test_most_recent_ignores_an_older_fragment_that_arrives_later() -> None:
    state = fold_all(MOST_RECENT, [obs("new", "crm", 5, 1), obs("old", "support", 1, 2)])
    assert state is not None and (state.value, state.source) == ("new", "crm")


def test_most_recent_breaks_equal_times_by_ingestion_order() -> None:
    state = fold_all(MOST_RECENT, [obs("first", "crm", 1, 1), obs("second", "support", 1, 2)])
    assert state is not None and state.value == "second"


def test_source_priority_prefers_the_listed_source_even_when_it_is_older() -> None:
    state = fold_all(PRIORITY, [obs("Ada", "crm", 1, 1), obs("A.", "ecommerce", 9, 2)])
    assert state is not None and (state.value, state.source) == ("Ada", "crm")
    assert state.reason == "crm ranks 1 of 2 (crm > ecommerce)"


def test_source_priority_uses_the_next_listed_source_while_the_first_has_nothing() -> None:
    state = fold_all(PRIORITY, [obs("A.", "ecommerce", 1, 1), obs("", "crm", 2, 2)])
    assert state is not None and (state.value, state.source) == ("A.", "ecommerce")
    assert state.reason == "ecommerce ranks 2 of 2 (crm > ecommerce)"


def test_source_priority_falls_back_to_the_newest_unlisted_source() -> None:
    state = fold_all(PRIORITY, [obs("x", "support", 1, 1), obs("y", "mailchimp", 2, 2)])
    assert state is not None and (state.value, state.source) == ("y", "mailchimp")
    assert state.reason.startswith("no listed source (crm > ecommerce) has a value")
    later = PRIORITY.fold("field", state, obs("z", "crm", 0.5, 3))
    assert later is not None and (later.value, later.source) == ("z", "crm")


def test_source_priority_keeps_each_sources_latest_value_by_time() -> None:
    state = fold_all(PRIORITY, [obs("new", "crm", 5, 1), obs("stale", "crm", 1, 2)])
    assert state is not None and state.value == "new"


MERGE = Strategy(StrategyName.MERGE_ARRAYS)


def test_merge_arrays_unions_every_sources_list_without_duplicates() -> None:
    state = fold_all(
        MERGE, [obs(["vip", "beta"], "crm", 1, 1), obs(["beta", "buyer"], "ecommerce", 2, 2)]
    )
    assert state is not None
    assert state.value == ["vip", "beta", "buyer"]
    assert state.contributing_sources == ("crm", "ecommerce")
    assert (state.source, state.at) == ("ecommerce", at(2))


def test_merge_arrays_drops_a_tag_only_when_no_source_still_has_it() -> None:
    state = fold_all(
        MERGE,
        [
            obs(["vip", "beta"], "crm", 1, 1),
            obs(["beta"], "ecommerce", 2, 2),
            obs(["gold"], "crm", 3, 3),
        ],
    )
    assert state is not None and state.value == ["beta", "gold"]


def test_merge_arrays_ignores_an_older_list_from_the_same_source() -> None:
    state = fold_all(MERGE, [obs(["gold"], "crm", 3, 1), obs(["vip"], "crm", 1, 2)])
    assert state is not None and state.value == ["gold"]


DEEP = Strategy(StrategyName.DEEP_MERGE)


def test_deep_merge_combines_objects_key_by_key_and_newer_keys_win() -> None:
    state = fold_all(
        DEEP,
        [
            obs({"email": {"weekly": True, "daily": False}, "language": "en"}, "crm", 1, 1),
            obs({"email": {"daily": True}, "sms": False}, "mailchimp", 2, 2),
        ],
    )
    assert state is not None
    assert state.value == {
        "email": {"weekly": True, "daily": True},
        "language": "en",
        "sms": False,
    }
    assert state.contributing_sources == ("crm", "mailchimp")


def test_deep_merge_lets_an_older_object_add_keys_but_not_overwrite_newer_ones() -> None:
    state = fold_all(
        DEEP,
        [obs({"language": "fr"}, "crm", 5, 1), obs({"language": "en", "sms": True}, "web", 1, 2)],
    )
    assert state is not None and state.value == {"language": "fr", "sms": True}


def test_deep_merge_resolves_a_change_of_shape_by_time() -> None:
    state = fold_all(
        DEEP, [obs({"email": {"weekly": True}}, "crm", 1, 1), obs({"email": False}, "web", 2, 2)]
    )
    assert state is not None and state.value == {"email": False}


HIGHEST = Strategy(StrategyName.HIGHEST_VALUE)


def test_highest_value_keeps_the_largest_number_whenever_it_was_observed() -> None:
    state = fold_all(
        HIGHEST, [obs(900, "crm", 1, 1), obs(1200.5, "ecommerce", 0, 2), obs(300, "crm", 9, 3)]
    )
    assert state is not None and (state.value, state.source) == (1200.5, "ecommerce")


def test_highest_value_credits_the_first_source_to_reach_a_tie() -> None:
    state = fold_all(HIGHEST, [obs(500, "crm", 5, 1), obs(500, "ecommerce", 1, 2)])
    assert state is not None and state.source == "ecommerce"


def test_first_seen_keeps_the_earliest_observation_even_when_it_arrives_last() -> None:
    first_seen = Strategy(StrategyName.FIRST_SEEN)
    state = fold_all(
        first_seen, [obs("2024-05-01", "crm", 10, 1), obs("2023-01-09", "shopify", 2, 2)]
    )
    assert state is not None and (state.value, state.source) == ("2023-01-09", "shopify")


def test_non_empty_never_lets_a_blank_replace_a_value() -> None:
    non_empty = Strategy(StrategyName.NON_EMPTY)
    state = fold_all(non_empty, [obs("+14155552671", "crm", 1, 1), obs("  ", "support", 2, 2)])
    assert state is not None and (state.value, state.source) == ("+14155552671", "crm")
    assert fold_all(non_empty, [obs("", "crm", 1, 1)]) is None


def test_most_recent_keeps_a_blank_because_it_is_the_newest_value() -> None:
    state = fold_all(MOST_RECENT, [obs("x", "crm", 1, 1), obs("", "support", 2, 2)])
    assert state is not None and state.value == ""


def test_a_state_made_under_another_configuration_is_not_folded_silently() -> None:
    state = fold_all(PRIORITY, [obs("Ada", "crm", 1, 1)])
    other = Strategy(StrategyName.SOURCE_PRIORITY, ("ecommerce", "crm"))
    with pytest.raises(ValueError, match="was made by source_priority:crm>ecommerce"):
        other.fold("field", state, obs("A.", "ecommerce", 2, 2))


_values = st.one_of(
    st.text(max_size=3),
    st.integers(-5, 5),
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    st.dictionaries(
        st.sampled_from(["x", "y"]),
        st.one_of(
            st.booleans(),
            st.dictionaries(st.sampled_from(["p", "q"]), st.integers(0, 3), max_size=2),
        ),
        max_size=2,
    ),
)
_observations = st.lists(
    st.tuples(_values, st.sampled_from(["crm", "ecommerce", "support"]), st.integers(0, 3)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(raw=_observations, strategy_name=st.sampled_from(list(StrategyName)))
def test_every_strategy_reaches_the_same_state_whatever_the_arrival_order(
    raw: list[tuple[JsonValue, str, int]], strategy_name: StrategyName
) -> None:
    strategy = Strategy(
        strategy_name, ("crm", "ecommerce") if strategy_name is StrategyName.SOURCE_PRIORITY else ()
    )
    observations = [
        Observation(value, source, at(hour), seq)
        for seq, (value, source, hour) in enumerate(raw, start=1)
        if strategy.accepts(value) is None
    ]
    results = [
        fold_all(strategy, list(order))
        for order in itertools.islice(itertools.permutations(observations), 24)
    ]
    assert all(result == results[0] for result in results)


def test_the_most_specific_rule_wins_segment_by_segment_from_the_left() -> None:
    book = StrategyBook(
        MOST_RECENT,
        [
            StrategyRule(("*", "email"), Strategy(StrategyName.NON_EMPTY)),
            StrategyRule(("user", "*"), Strategy(StrategyName.FIRST_SEEN)),
            StrategyRule(("user", "tags"), MERGE),
            StrategyRule(("customer", "**"), HIGHEST),
            StrategyRule(("customer", "*"), Strategy(StrategyName.FIRST_SEEN)),
        ],
    )
    assert book.for_path("user.tags") == MERGE
    assert book.for_path("user.email").name is StrategyName.FIRST_SEEN
    assert book.for_path("account.email").name is StrategyName.NON_EMPTY
    assert book.for_path("customer.totalSpent").name is StrategyName.FIRST_SEEN
    assert book.for_path("customer.stats.visits") == HIGHEST
    assert book.for_path("customer") == MOST_RECENT
    assert book.for_path("other.field") == MOST_RECENT


# A small domain of values, so that equal, nearly equal (1, 1.0, true; 0.0 and -0.0; keys in
# another order) and different values all come up. (No NaN: documents refuse it.)
_json_values = st.recursive(
    st.sampled_from([None, True, False, 0, 1, 0.0, -0.0, 1.0, 1.5, "", "a", "1"]),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), children, max_size=3),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(a=_json_values, b=_json_values)
def test_two_values_are_the_same_exactly_when_they_write_as_the_same_json(
    a: JsonValue, b: JsonValue
) -> None:
    nested = same_value([a], [b])
    assert nested == (canonical([a]) == canonical([b]))
    reordered = dict(reversed(list(b.items()))) if isinstance(b, dict) else b
    assert same_value({"v": a, "w": 1}, {"w": 1, "v": reordered}) == nested
