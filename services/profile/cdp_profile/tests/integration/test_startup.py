from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cdp_profile import main as profile_main


def run_main(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", profile_main.__name__],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


BASE = {"DATABASE_URL": "postgresql://unused@127.0.0.1:1/x", "NATS_URL": "nats://127.0.0.1:1"}


def test_a_bad_mapping_file_stops_the_service_naming_file_line_and_entry(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings.yaml"
    mappings.write_text(
        "mappings:\n  - source: crm\n    target: mailchimp\n    fields:\n"
        "      - {from: user.firstName, to: merge_fields.FIRST_NAME1}\n"
        "      - {from: user.email, to: email_address, transform: rot13}\n"
    )
    finished = run_main({**BASE, "CDP_PROFILE_MAPPINGS_FILE": str(mappings)})
    assert finished.returncode == 2
    assert f"{mappings}:5: mapping crm -> mailchimp, entry 1" in finished.stderr
    assert "merge tag 'FIRST_NAME1' has 11 characters" in finished.stderr
    assert f"{mappings}:6: mapping crm -> mailchimp, entry 2" in finished.stderr
    assert "unknown transform 'rot13'" in finished.stderr


def test_a_malformed_connector_address_stops_the_service_naming_the_variable() -> None:
    finished = run_main({**BASE, "CDP_CONNECTOR_MAILCHIMP_ADDR": "not an address"})
    assert finished.returncode == 2
    assert "CDP_CONNECTOR_MAILCHIMP_ADDR='not an address' is not host:port" in finished.stderr
