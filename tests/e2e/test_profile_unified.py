"""A customer fed by two platforms, through the suite as a user runs it (`cdp up`)."""

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

from cdp_cli.reflection_client import ReflectionClient
from cdp_embedded.nats import free_port

BIN_DIR = Path("cdp")
PROFILE = "cdp.profile.v1.ProfileService"


@dataclass
class Suite:
    process: subprocess.Popen[str]
    env: dict[str, str]
    profile_address: str


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
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "NATS_URL", "MAILCHIMP_API_KEY")
    }
    profile_port = free_port()
    env.update(
        {
            "CDP_BIN_DIR": str(BIN_DIR.resolve()),
            "CDP_DATA_DIR": str(tmp_path / "data"),
            "CDP_EMBEDDED_NATS_PORT": str(free_port()),
            "CDP_IDENTITY_PORT": str(free_port()),
            "CDP_PROFILE_PORT": str(profile_port),
            "CDP_MAILCHIMP_PORT": str(free_port()),
            "CDP_PROFILE_SYNC_TARGET_TIMEOUT_SECONDS": "3",
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
        wait_for_line(process, "press Ctrl-C to stop", timeout=240)
        yield Suite(process, env, f"127.0.0.1:{profile_port}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def ingest(client: ReflectionClient, source: str, attributes: dict[str, object], at: str) -> dict:
    request = json.dumps(
        {
            "fragment": {
                "source": source,
                "identifiers": {
                    "email": "Ada.Lovelace@Example.com"
                    if source == "crm"
                    else "ada.lovelace@example.com"
                },
                "attributes": attributes,
                "observedAt": at,
            }
        }
    )
    (reply,) = client.call(f"{PROFILE}/IngestProfileFragment", request)
    answer: dict = json.loads(reply)
    return answer


def test_two_platforms_make_one_profile_whose_fields_say_where_and_why(suite: Suite) -> None:
    with grpc.insecure_channel(suite.profile_address) as channel:
        client = ReflectionClient(channel)
        crm = ingest(
            client,
            "crm",
            {
                "user": {"firstName": "Ada", "email": "ada.lovelace@example.com", "tags": ["vip"]},
                "account": {"companyName": "Analytical Engines"},
            },
            "2026-01-10T09:00:00Z",
        )
        shop = ingest(
            client,
            "ecommerce",
            {
                "user": {"firstName": "A. Lovelace", "tags": ["buyer"]},
                "customer": {"totalSpent": 1250.5, "orderCount": 4, "lastOrderDate": "2026-01-12"},
            },
            "2026-01-12T18:30:00Z",
        )
        assert crm["customerId"] == shop["customerId"]
        (raw,) = client.call(
            f"{PROFILE}/GetUnifiedProfile", json.dumps({"customerId": crm["customerId"]})
        )
        (synced,) = client.call(
            f"{PROFILE}/SyncProfile",
            json.dumps({"customerId": crm["customerId"], "source": "crm"}),
        )
    profile = json.loads(raw)["profile"]
    assert profile["attributes"]["user"] == {
        "firstName": "Ada",
        "email": "ada.lovelace@example.com",
        "tags": ["vip", "buyer"],
    }
    assert profile["attributes"]["customer"]["totalSpent"] == 1250.5
    provenance = profile["provenance"]
    assert set(provenance) == {
        "user.firstName",
        "user.email",
        "user.tags",
        "account.companyName",
        "customer.totalSpent",
        "customer.orderCount",
        "customer.lastOrderDate",
    }
    for path, field in provenance.items():
        assert field["source"] in ("crm", "ecommerce"), path
        assert field["strategy"] and field["reason"] and field["observedAt"], path
    assert provenance["user.firstName"]["source"] == "crm"
    assert provenance["user.firstName"]["strategy"] == "source_priority"
    assert provenance["user.tags"]["contributingSources"] == ["crm", "ecommerce"]
    assert provenance["customer.lastOrderDate"] == {
        "source": "ecommerce",
        "observedAt": "2026-01-12T18:30:00Z",
        "strategy": "most_recent",
        "reason": "newest observation (by observed time)",
    }
    # One result per target: Mailchimp is the only one the packaged mappings write to. Whether
    # a connector answers depends on which pexes run; the result says either way.
    (mailchimp,) = json.loads(synced)["results"]
    assert mailchimp["platform"] == "mailchimp" and mailchimp["syncedAt"]
    assert mailchimp.get("success", False) != bool(mailchimp.get("error"))

    shown = subprocess.run(
        [str(BIN_DIR / "cdp.pex"), "profile", "show", crm["customerId"]],
        env=suite.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    first_name = next(
        line for line in shown.stdout.splitlines() if line.startswith("user.firstName")
    )
    assert '"Ada"' in first_name and "crm" in first_name and "ranks 1" in first_name
