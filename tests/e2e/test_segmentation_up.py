"""Both example segments through the suite as a user runs it: profiles ingested by the
profile service from three platforms, memberships kept current as profiles change and as
time passes, deltas synced into the Mailchimp sandbox's static segments by the connector."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp.segmentation.v1 import segmentation_pb2 as pb
from cdp.segmentation.v1 import segmentation_pb2_grpc

from .suite import RunningSuite, eventually, suite_up

EXAMPLES = Path("services/segmentation/examples")
SANDBOX_KEY = "0123456789abcdef0123456789abcdef-us1"


@pytest.fixture
def shift_file(tmp_path: Path) -> Path:
    path = tmp_path / "clock-shift"
    path.write_text("0")
    return path


@pytest.fixture
def suite(tmp_path: Path, shift_file: Path) -> Iterator[RunningSuite]:
    with suite_up(tmp_path, {
        "MAILCHIMP_ACTIVITY_INTERVAL_SECONDS": "0",
        "CDP_SEGMENTATION_CLOCK_SHIFT_FILE": str(shift_file),
        "CDP_SEGMENTATION_REEVALUATE_SECONDS": "0.5",
        "CDP_SEGMENTATION_SYNC_POLL_SECONDS": "0.5",
    }) as running:
        yield running


def wait_for(probe: Callable[[], Any], expected: Any, what: str, timeout: float = 60) -> None:
    eventually(probe, lambda seen: seen == expected, timeout=timeout,
               message=f"{what} (expected {expected!r})")


class Sandbox:
    def __init__(self, address: str) -> None:
        self.base = f"http://{address}/3.0"
        token = base64.b64encode(f"cdp:{SANDBOX_KEY}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.base + path, headers=self.headers)
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def segment_emails(self, name: str) -> set[str]:
        (audience,) = self.get("/lists")["lists"]
        for segment in self.get(f"/lists/{audience['id']}/segments?count=1000")["segments"]:
            if segment["name"] == name:
                page = self.get(
                    f"/lists/{audience['id']}/segments/{segment['id']}/members?count=1000"
                )
                return {m["email_address"] for m in page["members"]}
        return set()


def test_both_example_segments_stay_current_and_sync_deltas_into_mailchimp(
    suite: RunningSuite, shift_file: Path
) -> None:
    now = datetime.now(UTC)

    def ago(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    created: dict[str, str] = {}
    for name in ("high_value_email_engaged", "subscribers_with_abandoned_carts"):
        done = suite.cdp("segments", "create", "--file", str(EXAMPLES / f"{name}.json"),
                         "--json")
        assert done.returncode == 0, done.stderr
        created[name] = json.loads(done.stdout)["segment"]["id"]
    engaged = created["high_value_email_engaged"]
    carts = created["subscribers_with_abandoned_carts"]
    listed = suite.cdp("segments", "list")
    assert "High-value email-engaged customers" in listed.stdout, listed.stderr

    emails = {"ada": "ada@example.com", "bob": "bob@example.com", "cy": "cy@example.com"}
    customers: dict[str, str] = {}
    with grpc.insecure_channel(suite.address("profile")) as channel:
        profiles = profile_pb2_grpc.ProfileServiceStub(channel)

        def ingest(who: str, source: str, attributes: dict[str, Any]) -> None:
            fragment = json_format.ParseDict({
                "source": source, "identifiers": {"email": emails[who]},
                "attributes": attributes, "observedAt": datetime.now(UTC).isoformat(),
            }, profile_pb2.ProfileFragment())
            reply = profiles.IngestProfileFragment(
                profile_pb2.IngestProfileFragmentRequest(fragment=fragment), timeout=30
            )
            customers[who] = reply.customer_id

        for who, value in (("ada", 900), ("bob", 200), ("cy", 700)):
            ingest(who, "crm", {"user": {"email": emails[who]},
                                "customer": {"lifetime_value": value}})
        for who, opened in (("ada", 3), ("bob", 1), ("cy", 40)):
            ingest(who, "mailchimp", {"email": {"last_open_date": ago(opened)},
                                      "mailchimp": {"status": "subscribed"}})
        ingest("ada", "shopify", {"ecommerce": {"cart": {"value": 80},
                                                "cart_abandoned_at": ago(1)}})
        ingest("cy", "shopify", {"ecommerce": {"cart": {"value": 50},
                                               "cart_abandoned_at": ago(2)}})
        # Static segments hold audience members: each customer's profile is synced to
        # Mailchimp first, through the profile service's own fan-out.
        for who in emails:
            synced = profiles.SyncProfile(
                profile_pb2.SyncProfileRequest(customer_id=customers[who], source="crm"),
                timeout=30,
            )
            assert [(r.platform, r.success) for r in synced.results] == [("mailchimp", True)], (
                synced)

        with grpc.insecure_channel(suite.address("segmentation")) as seg_channel:
            segments = segmentation_pb2_grpc.SegmentationServiceStub(seg_channel)

            def members(segment_id: str) -> set[str]:
                names = {customer: who for who, customer in customers.items()}
                return {
                    names.get(m.customer_id, m.customer_id)
                    for page in segments.ListMembers(
                        pb.ListMembersRequest(segment_id=segment_id), timeout=30)
                    for m in page.members
                }

            sandbox = Sandbox(suite.address("mailchimp_sandbox"))
            engaged_name = "High-value email-engaged customers"
            carts_name = "Subscribers with abandoned carts"

            wait_for(lambda: members(engaged), {"ada"}, "engaged members")
            wait_for(lambda: members(carts), {"ada", "cy"}, "cart members")
            synced_now = suite.cdp("segments", "sync", engaged)
            assert synced_now.returncode == 0, synced_now.stdout + synced_now.stderr
            assert synced_now.stdout.startswith("mailchimp")
            assert sandbox.segment_emails(engaged_name) == {emails["ada"]}
            # The cart segment is realtime: its delta goes out without being asked.
            wait_for(lambda: sandbox.segment_emails(carts_name), {emails["ada"], emails["cy"]},
                     "cart segment in Mailchimp")

            # Profiles change: bob becomes high-value, ada unsubscribes.
            ingest("bob", "crm", {"customer": {"lifetime_value": 1000}})
            ingest("ada", "mailchimp", {"mailchimp": {"status": "unsubscribed"}})
            wait_for(lambda: members(engaged), {"ada", "bob"}, "engaged after bob's change")
            wait_for(lambda: members(carts), {"cy"}, "carts after ada unsubscribed")
            assert suite.cdp("segments", "sync", engaged).returncode == 0
            assert sandbox.segment_emails(engaged_name) == {emails["ada"], emails["bob"]}
            wait_for(lambda: sandbox.segment_emails(carts_name), {emails["cy"]},
                     "ada left the cart segment in Mailchimp")

            # Six and a half days pass: cy's abandoned cart is older than 7 days.
            shift_file.write_text(str(6.5 * 86400))
            wait_for(lambda: members(carts), set(), "carts after time passed")
            assert members(engaged) == {"ada", "bob"}
            wait_for(lambda: sandbox.segment_emails(carts_name), set(),
                     "cy left the cart segment in Mailchimp")

            shown = suite.cdp("segments", "show", engaged)
            assert "members   2" in shown.stdout, shown.stdout + shown.stderr
            assert "sync mailchimp: last success" in shown.stdout

    code, output = suite.stop()
    assert code == 0, output
    assert "cdp: segmentation exited with 0" in output
