from __future__ import annotations

from pathlib import Path

import pytest

from cdp_cli.identity_commands import _platform_ids
from cdp_cli.main import build_parser, main
from cdp_cli.runtime import lock_data_dir, redact_url
from cdp_cli.services import SERVICES, by_name, port_of


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("up", "status", "call", "identity"):
        assert command in out


def test_passwords_are_hidden_when_urls_are_printed() -> None:
    assert redact_url("postgresql://cdp:hunter2@db:5432/cdp") == "postgresql://cdp:***@db:5432/cdp"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert redact_url("postgresql://cdp@db/cdp") == "postgresql://cdp@db/cdp"


def test_platform_ids_must_name_their_platform() -> None:
    (parsed,) = _platform_ids(["shopify:7781"])
    assert (parsed.platform, parsed.id) == ("shopify", "7781")
    with pytest.raises(ValueError, match="PLATFORM:ID"):
        _platform_ids(["7781"])


def test_service_ports_can_be_moved_by_environment() -> None:
    identity = by_name("identity")
    assert port_of(identity, {}) == identity.port
    assert port_of(identity, {"CDP_IDENTITY_PORT": "6001"}) == 6001


def test_unknown_service_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyError, match="unknown service 'nope'"):
        by_name("nope")
    assert {spec.name for spec in SERVICES} >= {"identity"}


def test_a_bad_platform_id_exits_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identity", "resolve", "--platform-id", "nocolon"]) == 2
    assert "must look like PLATFORM:ID" in capsys.readouterr().err


def test_a_data_folder_is_held_by_one_cdp_up_at_a_time(tmp_path: Path) -> None:
    held = lock_data_dir(tmp_path)
    with pytest.raises(RuntimeError, match="already running"):
        lock_data_dir(tmp_path)
    held.close()
    lock_data_dir(tmp_path).close()
