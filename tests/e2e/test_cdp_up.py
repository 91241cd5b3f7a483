"""The suite started the way a user starts it: `cdp up` from the packaged binaries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp_cli.reflection_client import ReflectionClient

from .suite import RunningSuite, suite_up


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[RunningSuite]:
    with suite_up(tmp_path) as running:
        yield running


def test_cdp_up_serves_identity_to_a_reflection_client_and_stops_cleanly(
    suite: RunningSuite,
) -> None:
    with grpc.insecure_channel(suite.address("identity")) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        client = ReflectionClient(channel)
        assert "cdp.identity.v1.IdentityService" in client.services()
        request = json.dumps({"identifiers": {"email": "Ada@Example.com"}, "sourcePlatform": "crm"})
        (first,) = client.call("cdp.identity.v1.IdentityService/ResolveIdentity", request)
        (again,) = client.call("cdp.identity.v1.IdentityService/ResolveIdentity", request)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    created, found = json.loads(first), json.loads(again)
    assert created["method"] == "MATCH_METHOD_NEW"
    assert found["customerId"] == created["customerId"]
    assert found["matchedOn"] == ["email"]
    state = json.loads((suite.data_dir / "state.json").read_text())
    assert state["services"]["identity"]["address"] == suite.address("identity")

    code, output = suite.stop()
    assert code == 0, output
    assert "cdp: identity exited with 0" in output
    assert not (suite.data_dir / "state.json").exists()


def cdp(suite: RunningSuite, *args: str) -> tuple[int, str, str]:
    done = suite.cdp(*args)
    return done.returncode, done.stdout, done.stderr


def test_the_cli_resolves_merges_unmerges_and_forgets(suite: RunningSuite) -> None:
    code, out, _ = cdp(suite, "identity", "resolve", "--email", "ada@example.com",
                       "--source", "crm")
    assert code == 0
    ada = json.loads(out)["customerId"]
    _, out, _ = cdp(suite, "identity", "resolve", "--phone", "+14155552671")
    other = json.loads(out)["customerId"]
    code, out, _ = cdp(suite, "identity", "merge", other, ada, "--reason", "same person")
    assert code == 0
    merge = json.loads(out)
    assert merge["survivorCustomerId"] == ada
    _, out, _ = cdp(suite, "identity", "show", other)
    assert {e["value"] for e in json.loads(out)["identities"]} == {"ada@example.com",
                                                                    "+14155552671"}
    _, out, _ = cdp(suite, "identity", "merges", ada)
    assert json.loads(out)["merges"][0]["reason"] == "same person"
    code, out, _ = cdp(suite, "identity", "unmerge", merge["mergeId"])
    assert code == 0 and json.loads(out)["restoredCustomerId"] == other
    code, out, _ = cdp(suite, "identity", "forget", ada)
    assert code == 0 and json.loads(out)["identitiesDeleted"] == "1"
    code, _, err = cdp(suite, "identity", "resolve", "--email", "ada@example.com")
    assert code == 1 and "FAILED_PRECONDITION" in err and "forgotten" in err
    code, _, err = cdp(suite, "identity", "resolve", "--email", "not-an-email")
    assert code == 1 and "identifiers.email: is not a valid email address" in err
