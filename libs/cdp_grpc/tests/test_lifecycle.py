from __future__ import annotations

from dataclasses import dataclass

import pytest

from cdp_grpc import exit_on, load_settings_or_exit
from cdp_settings import setting


class BadFile(Exception):
    pass


def test_an_expected_start_up_error_is_printed_under_its_heading_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited, exit_on(BadFile, heading="invalid schema:"):
        raise BadFile("attributes.yaml:3: unknown type 'nmber'")
    assert exited.value.code == 2
    printed = capsys.readouterr().err
    assert printed == "error: invalid schema:\nattributes.yaml:3: unknown type 'nmber'\n"


def test_any_other_error_is_left_to_propagate() -> None:
    with pytest.raises(KeyError), exit_on(BadFile):
        raise KeyError("not a start-up check")


@dataclass(frozen=True)
class TwoRequired:
    url: str = setting("CDP_TEST_LIFECYCLE_URL")
    port: int = setting("CDP_TEST_LIFECYCLE_PORT")


def test_settings_that_do_not_load_name_every_bad_variable_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDP_TEST_LIFECYCLE_URL", raising=False)
    monkeypatch.setenv("CDP_TEST_LIFECYCLE_PORT", "eighty")
    with pytest.raises(SystemExit) as exited:
        load_settings_or_exit(TwoRequired)
    error = capsys.readouterr().err
    assert exited.value.code == 2
    assert "CDP_TEST_LIFECYCLE_URL" in error and "CDP_TEST_LIFECYCLE_PORT" in error
