"""`cdp up` with no Mailchimp key: the sandbox starts and the connector syncs into it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cdp_cli.reflection_client import ReflectionClient

from .suite import RunningSuite, suite_up


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[RunningSuite]:
    with suite_up(tmp_path, {"MAILCHIMP_ACTIVITY_INTERVAL_SECONDS": "0"},
                  timeout=180) as running:
        yield running


def test_cdp_up_without_a_key_syncs_profiles_into_the_sandbox_and_stops_cleanly(
    suite: RunningSuite,
) -> None:
    request = json.dumps({"profiles": [{
        "customerId": "c-1", "email": "ada@example.com",
        "payload": {"merge_fields": {"FNAME": "Ada"}, "tags": ["vip"]},
    }]})
    with grpc.insecure_channel(suite.address("mailchimp")) as channel:
        client = ReflectionClient(channel)
        (pushed,) = client.call("cdp.connector.v1.ConnectorService/PushProfiles", request)
        (health,) = client.call("cdp.connector.v1.ConnectorService/GetConnectorHealth", "{}")
    assert json.loads(pushed)["results"] == [{"key": "c-1", "success": True}]
    assert json.loads(health)["status"] == "CONNECTION_STATUS_HEALTHY"
    sandbox = f"http://{suite.address('mailchimp_sandbox')}"
    with urllib.request.urlopen(f"{sandbox}/_sandbox/stats", timeout=10) as reply:
        stats = json.loads(reply.read())
    assert stats["by_route"].get("POST /lists/{}") == 1
    state = json.loads((suite.data_dir / "state.json").read_text())
    assert set(state["services"]) >= {"mailchimp", "mailchimp_sandbox"}

    code, output = suite.stop()
    assert code == 0, output
    assert "cdp: mailchimp exited with 0" in output
    assert "cdp: mailchimp_sandbox exited with 0" in output
