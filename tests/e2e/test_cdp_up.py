"""The suite started the way a user starts it: `cdp up` from the packaged binaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp_cli.reflection_client import ReflectionClient
from cdp_embedded.nats import free_port

# Put in the sandbox by `runtime_package_dependencies` (see BUILD): the same pexes
# `./pants package ::` writes to dist/cdp/.
BIN_DIR = Path("cdp")


@dataclass
class Suite:
    process: subprocess.Popen[str]
    identity_address: str
    data_dir: Path


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


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    identity_port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "NATS_URL", "MAILCHIMP_API_KEY")
    }
    env.update(
        {
            "CDP_BIN_DIR": str(BIN_DIR.resolve()),
            "CDP_DATA_DIR": str(tmp_path / "data"),
            "CDP_EMBEDDED_NATS_PORT": str(free_port()),
            "CDP_IDENTITY_PORT": str(identity_port),
        }
    )
    process = subprocess.Popen(
        [str(BIN_DIR / "cdp.pex"), "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_line(process, "press Ctrl-C to stop", timeout=180)
        yield Suite(process, f"127.0.0.1:{identity_port}", tmp_path / "data")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cdp_up_serves_identity_to_a_reflection_client_and_stops_cleanly(suite: Suite) -> None:
    with grpc.insecure_channel(suite.identity_address) as channel:
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
    assert state["services"]["identity"]["address"] == suite.identity_address

    suite.process.send_signal(signal.SIGINT)
    output, _ = suite.process.communicate(timeout=60)
    assert suite.process.returncode == 0, output
    assert "cdp: identity exited with 0" in output
    assert not (suite.data_dir / "state.json").exists()


def cdp(suite: Suite, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "CDP_IDENTITY_ADDR": suite.identity_address}
    done = subprocess.run([str(BIN_DIR / "cdp.pex"), *args], env=env, capture_output=True,
                          text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_the_cli_resolves_merges_unmerges_and_forgets(suite: Suite) -> None:
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
