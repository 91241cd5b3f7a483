from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cdp_grpc import tune_garbage_collection
from cdp_grpc.lifecycle import GC_THRESHOLDS


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_tuned_service_freezes_what_it_loaded_and_collects_less_often(
    restored_collector: None,
) -> None:
    loaded = {"configuration": ["loaded", "at", "start"]}
    tune_garbage_collection()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # rarer than Python's default young collections
    # What start-up loaded is out of the collector's sight; what comes later is not.
    assert gc.get_freeze_count() > 0
    assert not any(loaded is item for item in gc.get_objects())
    later = {"batch": ["of", "fragments"]}
    assert any(later is item for item in gc.get_objects())
