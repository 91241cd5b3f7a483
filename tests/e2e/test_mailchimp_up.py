"""`cdp up` with no Mailchimp key: the sandbox starts and the connector syncs into it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from cdp_cli.reflection_client import ReflectionClient
from cdp_embedded.nats import free_port

# Put in the sandbox by `runtime_package_dependencies` (see BUILD).
BIN_DIR = Path("cdp")


def wait_for_line(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise AssertionError(f"cdp up exited with {process.returncode}: {lines}")
            continue
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not printed within {timeout} s: {lines}")


@dataclass
class Suite:
    process: subprocess.Popen[str]
    connector_address: str
    sandbox_url: str
    data_dir: Path


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    ports = {name: free_port() for name in ("connector", "sandbox", "webhook")}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "NATS_URL", "MAILCHIMP_API_KEY", "MAILCHIMP_API_URL")
    }
    env.update({
        "CDP_BIN_DIR": str(BIN_DIR.resolve()),
        "CDP_DATA_DIR": str(tmp_path / "data"),
        "CDP_EMBEDDED_NATS_PORT": str(free_port()),
        "CDP_MAILCHIMP_PORT": str(ports["connector"]),
        "CDP_MAILCHIMP_SANDBOX_PORT": str(ports["sandbox"]),
        "MAILCHIMP_WEBHOOK_PORT": str(ports["webhook"]),
        "MAILCHIMP_ACTIVITY_INTERVAL_SECONDS": "0",
    })
    process = subprocess.Popen(
        [str(BIN_DIR / "cdp.pex"), "up"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_for_line(process, "press Ctrl-C to stop", timeout=180)
        yield Suite(process, f"127.0.0.1:{ports['connector']}",
                    f"http://127.0.0.1:{ports['sandbox']}", tmp_path / "data")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cdp_up_without_a_key_syncs_profiles_into_the_sandbox_and_stops_cleanly(
    suite: Suite,
) -> None:
    request = json.dumps({"profiles": [{
        "customerId": "c-1", "email": "ada@example.com",
        "payload": {"merge_fields": {"FNAME": "Ada"}, "tags": ["vip"]},
    }]})
    with grpc.insecure_channel(suite.connector_address) as channel:
        client = ReflectionClient(channel)
        (pushed,) = client.call("cdp.connector.v1.ConnectorService/PushProfiles", request)
        (health,) = client.call("cdp.connector.v1.ConnectorService/GetConnectorHealth", "{}")
    assert json.loads(pushed)["results"] == [{"key": "c-1", "success": True}]
    assert json.loads(health)["status"] == "CONNECTION_STATUS_HEALTHY"
    with urllib.request.urlopen(f"{suite.sandbox_url}/_sandbox/stats", timeout=10) as reply:
        stats = json.loads(reply.read())
    assert stats["by_route"].get("POST /lists/{}") == 1
    state = json.loads((suite.data_dir / "state.json").read_text())
    assert set(state["services"]) >= {"mailchimp", "mailchimp_sandbox"}

    suite.process.send_signal(signal.SIGINT)
    output, _ = suite.process.communicate(timeout=60)
    assert suite.process.returncode == 0, output
    assert "cdp: mailchimp exited with 0" in output
    assert "cdp: mailchimp_sandbox exited with 0" in output
