from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cdp_settings import Secret, SettingsError, describe_settings, load_settings, setting


@dataclass(frozen=True)
class PoolSettings:
    size: int = setting("TEST_POOL_SIZE", default=5)


@dataclass(frozen=True)
class ExampleSettings:
    url: str = setting("TEST_URL", doc="where to connect")
    api_key: Secret = setting("TEST_API_KEY", default=Secret(""))
    verbose: bool = setting("TEST_VERBOSE", default=False)
    ratio: float = setting("TEST_RATIO", default=0.5)
    data_dir: Path = setting("TEST_DATA_DIR", default=Path("/tmp"))
    hosts: tuple[str, ...] = setting("TEST_HOSTS", default=())
    limit: int | None = setting("TEST_LIMIT", default=None)
    pool: PoolSettings = PoolSettings()


def test_values_are_parsed_by_their_annotation() -> None:
    loaded = load_settings(
        ExampleSettings,
        {
            "TEST_URL": "postgresql://x",
            "TEST_VERBOSE": "yes",
            "TEST_RATIO": "0.25",
            "TEST_HOSTS": "a, b,,c",
            "TEST_LIMIT": "7",
            "TEST_POOL_SIZE": "12",
            "TEST_API_KEY": "abc-us1",
        },
    )
    assert loaded.url == "postgresql://x"
    assert loaded.verbose is True
    assert loaded.ratio == 0.25
    assert loaded.hosts == ("a", "b", "c")
    assert loaded.limit == 7
    assert loaded.pool.size == 12
    assert loaded.api_key.reveal() == "abc-us1"


def test_defaults_apply_when_unset_or_empty() -> None:
    loaded = load_settings(ExampleSettings, {"TEST_URL": "u", "TEST_RATIO": "  "})
    assert loaded.ratio == 0.5
    assert loaded.limit is None
    assert loaded.pool.size == 5


def test_every_problem_is_reported_at_once_and_names_its_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(ExampleSettings, {"TEST_VERBOSE": "maybe", "TEST_POOL_SIZE": "ten"})
    problems = caught.value.problems
    assert any(p.startswith("TEST_URL is required") and "where to connect" in p for p in problems)
    assert any(p.startswith("TEST_VERBOSE='maybe' is not a boolean") for p in problems)
    assert any(p.startswith("TEST_POOL_SIZE='ten' is not an integer") for p in problems)
    assert len(problems) == 3


def test_secrets_never_show_in_repr_or_errors() -> None:
    loaded = load_settings(ExampleSettings, {"TEST_URL": "u", "TEST_API_KEY": "supersecret-us1"})
    assert "supersecret" not in repr(loaded)
    assert "supersecret" not in str(loaded.api_key)


def test_describe_lists_nested_settings() -> None:
    names = [row[0] for row in describe_settings(ExampleSettings)]
    assert "TEST_URL" in names and "TEST_POOL_SIZE" in names
