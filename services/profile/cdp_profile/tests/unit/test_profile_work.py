from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_profile.domain.model import Leaf, ProfileHead
from cdp_profile.domain.profile import ProfileWork
from cdp_profile.domain.strategies import Strategy, StrategyBook, StrategyName

BOOK = StrategyBook(Strategy(StrategyName.MOST_RECENT))
T0 = datetime(2026, 1, 1, tzinfo=UTC)

_paths = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map(".".join)
_leaves = st.lists(st.builds(Leaf, _paths, st.integers(0, 9)), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(history=st.lists(_leaves, max_size=4), fragment=_leaves)
def test_the_quick_shape_check_agrees_with_the_violations_it_stands_for(
    history: list[list[Leaf]], fragment: list[Leaf]
) -> None:
    work = ProfileWork(ProfileHead("c", 0, {}, T0, T0), BOOK, {})
    for seq, leaves in enumerate(history, start=1):
        work.apply(leaves, source="crm", at=seq, seq=seq, strict=False)
    assert work._fits(fragment) == (work.shape_conflicts(fragment, "attributes") == [])
