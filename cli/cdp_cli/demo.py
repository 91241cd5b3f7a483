"""`cdp demo`: the suite brought up as `cdp up` brings it up, then its main job run end to
end on the sample data (`samples/demo.json`) through the services' own APIs.

The job resolves a CRM's and a shop's customers into unified customers, ingests them as
profile fragments, creates the two example segments, syncs every profile into the local
Mailchimp sandbox through the connector (whose audience webhook tells the suite who is
subscribed), publishes orders, carts and email opens over gRPC and web activity over the
Segment-compatible HTTP API, waits (each with a deadline) for what happens asynchronously,
syncs the segments, and prints what the services and the sandbox report back.

Sample data is never to reach a real system: the demo refuses to run when settings point
at real infrastructure, and it keeps its own data folder, which it empties at each start.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO, TypeVar

import grpc
import nats
from google.protobuf import json_format
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp.segmentation.v1 import segmentation_pb2, segmentation_pb2_grpc
from cdp_cli.demo_sample import (
    CRM,
    SHOP,
    CrmContact,
    Sample,
    ShopCustomer,
    expected_order_counts,
    fragments_request,
    grpc_events,
    member_email,
    resolve_request,
    tracking_batches,
)
from cdp_cli.profile_commands import format_profile
from cdp_cli.runtime import LOCK_FILE, Suite, lock_data_dir
from cdp_cli.segments_commands import criteria_text, schedule_text
from cdp_cli.segments_commands import format_sync as format_segment_sync
from cdp_cli.services import by_name

T = TypeVar("T")

DEFAULT_DATA_DIR = ".cdp-demo"
# A file that marks a data folder as the demo's own, so that the next demo may empty it.
MARKER_FILE = "cdp-demo"
# Settings that point the suite at real infrastructure: sample data must never go there.
REAL_INFRASTRUCTURE = ("DATABASE_URL", "NATS_URL", "MAILCHIMP_API_KEY", "MAILCHIMP_API_URL")
# ... and those that send one service's calls to another place than the suite started here.
_ADDRESS_SETTING = re.compile(r"^CDP_[A-Z0-9_]+_ADDR$")
REQUIRED_SERVICES = ("identity", "profile", "event_router", "segmentation",
                     "mailchimp_sandbox", "mailchimp")
# `services/segmentation/examples`, packaged with the CLI as resources (see cli/BUILD).
EXAMPLES_PACKAGE = "examples"
EXAMPLE_SEGMENTS = ("high_value_email_engaged.json", "subscribers_with_abandoned_carts.json")
# The router's HTTP tracking API and the connector's webhook endpoint listen beside their
# gRPC ports; the same variables move them for the services and for this job.
TRACKING_PORT = ("CDP_EVENTS_HTTP_PORT", 50153)
WEBHOOK_PORT = ("MAILCHIMP_WEBHOOK_PORT", 50161)
# The router's write key for a local run (CDP_EVENTS_WRITE_KEYS replaces it); source "web".
DEFAULT_WRITE_KEYS = "cdp-local-write-key=web"
WEB_SOURCE = "web"
EMAIL_TARGET = "email"
TRIGGERS_CONSUMER = ("CDP_EVENTS", "event-router-triggers")
SEGMENTATION_CONSUMER = ("CDP_PROFILE", "segmentation-profiles")
# Profile fields (last path segment, any case) whose values the summary does not print: the
# sample's people are invented, but a name, an email or a phone number on screen is a habit
# worth not having. Mailchimp's merge tags for them come back through its webhooks.
PERSONAL_FIELDS = frozenset({"firstname", "lastname", "fullname", "fname", "lname", "phone",
                             "email", "email_address",
                             "birthdate", "birthday", "address"})
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.25
CALLS_IN_FLIGHT = 8
RPC_SECONDS = 60.0


class DemoRefused(Exception):
    """The demo will not run here; the message says why and what to do."""


class StepFailed(Exception):
    """A step could not do what it is for; the message says what happened."""


def outside_settings(environ: Mapping[str, str]) -> list[str]:
    """The settings present in `environ` that would take the demo outside this machine."""
    named = [name for name in REAL_INFRASTRUCTURE if environ.get(name)]
    return named + sorted(
        name for name, value in environ.items() if value and _ADDRESS_SETTING.match(name)
    )


def prepare_data_dir(data_dir: Path) -> bool:
    """Makes `data_dir` an empty demo folder; True when a previous demo's data was removed.

    A folder with content that no demo made is refused: it may be a `cdp up` folder.
    """
    removed = False
    if data_dir.is_dir() and any(data_dir.iterdir()):
        if not (data_dir / MARKER_FILE).is_file():
            raise DemoRefused(
                f"{data_dir} holds data that no demo made (a `cdp up` folder?); the demo starts "
                "from a folder of its own: give another --data-dir"
            )
        try:
            held = lock_data_dir(data_dir)
        except RuntimeError as error:
            raise DemoRefused(str(error)) from None
        try:
            for child in data_dir.iterdir():
                if child.name == LOCK_FILE:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        finally:
            held.close()
        removed = True
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER_FILE).write_text(
        "A `cdp demo` data folder: every demo run empties it and starts again.\n"
    )
    return removed


def write_key_for_web(configured: str) -> str:
    """The write key whose events the router files under source `web`."""
    pairs = [part.split("=", 1) for part in configured.split(",") if "=" in part]
    for key, source in pairs:
        if source.strip() == WEB_SOURCE:
            return key.strip()
    if pairs:
        return pairs[0][0].strip()
    raise DemoRefused("CDP_EVENTS_WRITE_KEYS names no write key (KEY=SOURCE,...)")


def example_segment(file_name: str) -> segmentation_pb2.Segment:
    text = resources.files(EXAMPLES_PACKAGE).joinpath(file_name).read_text()
    return json_format.Parse(text, segmentation_pb2.Segment())


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased address."""
    return hashlib.md5(email.lower().encode()).hexdigest()


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    what: str,
    timeout: float = WAIT_SECONDS,
) -> tuple[T, float]:
    """Polls `probe` until `accept` holds; the value and the seconds it took. StepFailed
    past the deadline, naming `what` and the last value seen."""
    started = time.monotonic()
    while True:
        value = await probe()
        if accept(value):
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise StepFailed(f"{what}: not within {timeout:.0f} s (last seen: {value!r})")
        await asyncio.sleep(POLL_SECONDS)


async def bounded(calls: Iterable[Awaitable[T]], limit: int = CALLS_IN_FLIGHT) -> list[T]:
    """Runs `calls` with at most `limit` in flight; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))


def _http(method: str, url: str, body: Any = None,
          headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, json.loads(raw)
        except ValueError:
            return error.code, raw.decode(errors="replace")[:300]


async def http(method: str, url: str, body: Any = None,
               headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    try:
        return await asyncio.to_thread(_http, method, url, body, headers)
    except (urllib.error.URLError, OSError) as error:
        raise StepFailed(f"{method} {url}: {error}") from None


class MailchimpAudience:
    """The sandbox's audience through the Mailchimp Marketing API it serves (the real API's
    paths and auth), and its `/_sandbox` controls for what a person does in Mailchimp."""

    def __init__(self, api_url: str, api_key: str, sandbox_url: str) -> None:
        self._api_url = api_url
        self._sandbox_url = sandbox_url
        token = base64.b64encode(f"cdp-demo:{api_key}".encode()).decode()
        self._headers = {"Authorization": f"Basic {token}"}
        self.list_id = ""

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = await http(method, self._api_url + path, body, self._headers)
        if status >= 400:
            detail = reply.get("detail", reply) if isinstance(reply, dict) else reply
            raise StepFailed(f"Mailchimp {method} {path.split('?')[0]}: {status} {detail}")
        return reply

    async def open(self) -> None:
        lists = (await self.api("GET", "/lists?count=10"))["lists"]
        if not lists:
            raise StepFailed("the Mailchimp account has no audience")
        self.list_id = str(lists[0]["id"])

    async def add_webhook(self, url: str) -> None:
        await self.api("POST", f"/lists/{self.list_id}/webhooks", {
            "url": url,
            "events": {"subscribe": True, "unsubscribe": True, "cleaned": True,
                       "upemail": True, "profile": False, "campaign": False},
            # `api` too: the suite hears about the members its own sync creates.
            "sources": {"user": True, "admin": True, "api": True},
        })

    async def unsubscribe(self, email: str) -> None:
        """As if the person clicked "unsubscribe" in a campaign email."""
        url = f"{self._sandbox_url}/_sandbox/lists/{self.list_id}/simulate"
        status, reply = await http("POST", url, {"type": "unsubscribe", "email": email})
        if status != 200:
            raise StepFailed(f"the sandbox did not simulate an unsubscribe: {status} {reply}")

    async def member_statuses(self) -> Counter[str]:
        statuses: Counter[str] = Counter()
        offset = 0
        while True:
            page = await self.api(
                "GET", f"/lists/{self.list_id}/members?count=1000&offset={offset}"
                "&fields=members.status,total_items")
            statuses.update(str(member["status"]) for member in page["members"])
            offset += len(page["members"])
            if not page["members"] or offset >= page["total_items"]:
                return statuses

    async def member_events(self, email: str) -> int:
        page = await self.api(
            "GET", f"/lists/{self.list_id}/members/{subscriber_hash(email)}/events?count=1")
        return int(page["total_items"])

    async def static_segments(self) -> dict[str, int]:
        page = await self.api("GET", f"/lists/{self.list_id}/segments?type=static&count=1000")
        return {str(s["name"]): int(s["member_count"]) for s in page["segments"]}


@dataclass(frozen=True)
class Endpoints:
    """Where this suite's services listen, as the suite started them."""

    grpc: dict[str, str]
    tracking_url: str
    webhook_url: str
    mailchimp_api_url: str
    mailchimp_api_key: str
    sandbox_url: str
    nats_url: str
    write_key: str

    @classmethod
    def of(cls, suite: Suite, environ: Mapping[str, str]) -> Endpoints:
        running = {service.spec.name: service.address for service in suite.services}
        missing = [name for name in REQUIRED_SERVICES if name not in running]
        if missing:
            raise StepFailed(
                f"the demo needs every service; not started: {', '.join(missing)} (build them "
                "with ./pants package cli:cdp services:: sandboxes::)"
            )
        host = suite.options.host
        sandbox = running["mailchimp_sandbox"]
        exported = dict(by_name("mailchimp_sandbox").exports)
        tracking = int(environ.get(TRACKING_PORT[0]) or TRACKING_PORT[1])
        webhook = int(environ.get(WEBHOOK_PORT[0]) or WEBHOOK_PORT[1])
        return cls(
            grpc=running,
            tracking_url=f"http://{host}:{tracking}",
            webhook_url=f"http://{host}:{webhook}/webhooks/mailchimp",
            mailchimp_api_url=exported["MAILCHIMP_API_URL"].format(address=sandbox),
            mailchimp_api_key=exported["MAILCHIMP_API_KEY"],
            sandbox_url=f"http://{sandbox}",
            nats_url=suite.nats_url,
            write_key=write_key_for_web(environ.get("CDP_EVENTS_WRITE_KEYS") or
                                        DEFAULT_WRITE_KEYS),
        )


@dataclass
class JobState:
    """What the steps learn, for the steps after them and the summary."""

    customer_of: dict[str, str] = field(default_factory=dict)
    # Per source: how identity resolved its records ("new", "email", "email+phone", ...).
    resolutions: dict[str, Counter[str]] = field(default_factory=dict)
    probabilistic_confidences: list[float] = field(default_factory=list)
    member_email_of: dict[str, str] = field(default_factory=dict)
    segments: list[segmentation_pb2.Segment] = field(default_factory=list)
    expected_status: dict[str, str] = field(default_factory=dict)
    email_events_of: Counter[str] = field(default_factory=Counter)
    routed: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class StepReport:
    headline: str
    details: tuple[str, ...] = ()


def _counts(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in
                     sorted(counter.items(), key=lambda item: (-item[1], item[0])))


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s"


class DemoJob:
    """The demo's job against a running suite: `await job(suite)` runs every step, prints
    as it goes, and is True when every step succeeded."""

    def __init__(self, sample: Sample, *, environ: Mapping[str, str], data_dir: Path,
                 started: float, serving_after: bool, out: TextIO = sys.stdout) -> None:
        self.sample = sample
        self.environ = environ
        self.data_dir = data_dir
        self.started = started
        self.serving_after = serving_after
        self.out = out

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    async def __call__(self, suite: Suite) -> bool:
        job_started = time.monotonic()
        try:
            endpoints = Endpoints.of(suite, self.environ)
        except (StepFailed, DemoRefused) as error:
            self.say(f"cdp demo: {error}")
            return False
        channels = {name: grpc.aio.insecure_channel(address)
                    for name, address in endpoints.grpc.items() if name != "mailchimp_sandbox"}
        try:
            bus = await nats.connect(endpoints.nats_url, name="cdp-demo", connect_timeout=5,
                                     allow_reconnect=False)
        except (nats.errors.Error, OSError, TimeoutError) as error:
            self.say(f"cdp demo: NATS at {endpoints.nats_url} did not answer: {error!r}")
            for channel in channels.values():
                await channel.close(None)
            return False
        run = DemoRun(self.sample, endpoints, channels, bus.jetstream(), say=self.say)
        try:
            succeeded = await run.run_steps()
        finally:
            await bus.close()
            for channel in channels.values():
                await channel.close(None)
        if succeeded:
            self.say()
            for line in run.summary_lines:
                self.say(line)
        self.say(f"\ncdp demo: {'done' if succeeded else 'FAILED'}: the job took "
                 f"{_duration(time.monotonic() - job_started)}, "
                 f"{_duration(time.monotonic() - self.started)} since `cdp demo` started")
        if succeeded and self.serving_after:
            self.say(run.exploring(self._shown_dir()))
        return succeeded

    def _shown_dir(self) -> str:
        try:
            return str(self.data_dir.relative_to(Path.cwd()))
        except ValueError:
            return str(self.data_dir)


class DemoRun:
    """One run of the job: the clients of the suite's services, the steps, what they learn."""

    def __init__(self, sample: Sample, endpoints: Endpoints,
                 channels: Mapping[str, grpc.aio.Channel], js: JetStreamContext, *,
                 say: Callable[[str], None]) -> None:
        self.sample = sample
        self.endpoints = endpoints
        self.identity = identity_pb2_grpc.IdentityServiceStub(channels["identity"])
        self.profiles = profile_pb2_grpc.ProfileServiceStub(channels["profile"])
        self.router = events_pb2_grpc.EventRouterServiceStub(channels["event_router"])
        self.segmentation = segmentation_pb2_grpc.SegmentationServiceStub(
            channels["segmentation"])
        self.connector = connector_pb2_grpc.ConnectorServiceStub(channels["mailchimp"])
        self.mailchimp = MailchimpAudience(endpoints.mailchimp_api_url,
                                           endpoints.mailchimp_api_key, endpoints.sandbox_url)
        self.js = js
        self.say = say
        self.state = JobState()
        self.now = datetime.now(UTC)
        self.summary_lines: list[str] = []

    async def run_steps(self) -> bool:
        steps: Sequence[tuple[str, Callable[[], Awaitable[StepReport]]]] = (
            ("identity", self.resolve_identities),
            ("profiles", self.ingest_profiles),
            ("segments", self.create_segments),
            ("mailchimp", self.sync_profiles),
            ("events", self.publish_events),
            ("waiting", self.await_effects),
            ("segment sync", self.sync_segments),
            ("summary", self.summary),
        )
        sample = self.sample
        events = (len(sample.orders) + len(sample.carts) + len(sample.email_opens)
                  + len(sample.identifies) + len(sample.views))
        self.say(f"\ncdp demo: the main job on the sample data: {len(sample.crm)} CRM contacts, "
                 f"{len(sample.shop)} shop customers, {events} events\n")
        for number, (name, step) in enumerate(steps, start=1):
            began = time.monotonic()
            try:
                report = await step()
            except (StepFailed, grpc.aio.AioRpcError) as error:
                reason = (f"{error.code().name}: {error.details()}"
                          if isinstance(error, grpc.aio.AioRpcError) else str(error))
                self.say(f"[{number}/{len(steps)}] {name:<12} FAILED: {reason}")
                skipped = ", ".join(later for later, _ in steps[number:])
                if skipped:
                    self.say(f"       not run: {skipped}")
                return False
            took = _duration(time.monotonic() - began)
            self.say(f"[{number}/{len(steps)}] {name:<12} {report.headline}  ({took})")
            for line in report.details:
                self.say(f"       {line}")
        return True

    # --- 1. identity ------------------------------------------------------------------------

    async def resolve_identities(self) -> StepReport:
        """CRM first, then the shop: each shop customer is matched against the CRM's people,
        on identifiers first, then (names, birth date, postcode) probabilistically."""
        state = self.state
        systems: tuple[tuple[str, Sequence[CrmContact | ShopCustomer]], ...] = (
            (CRM, self.sample.crm), (SHOP, self.sample.shop))
        for source, records in systems:
            reply = await self.identity.BatchResolveIdentities(
                identity_pb2.BatchResolveIdentitiesRequest(
                    items=[resolve_request(record) for record in records]),
                timeout=RPC_SECONDS,
            )
            how: Counter[str] = Counter()
            for record, result in zip(records, reply.results, strict=True):
                if not result.HasField("resolution"):
                    raise StepFailed(f"identity refused {source} record {record.id}: "
                                     f"{result.error.message}")
                resolution = result.resolution
                state.customer_of[record.id] = resolution.customer_id
                state.member_email_of.setdefault(resolution.customer_id, member_email(record))
                if resolution.method == identity_pb2.MATCH_METHOD_PROBABILISTIC:
                    how["probabilistic"] += 1
                    state.probabilistic_confidences.append(resolution.confidence)
                elif resolution.method == identity_pb2.MATCH_METHOD_DETERMINISTIC:
                    how["+".join(sorted(set(resolution.matched_on)))] += 1
                else:
                    how["new"] += 1
            state.resolutions[source] = how
        customers = len(set(state.customer_of.values()))
        received = len(self.sample.crm) + len(self.sample.shop)
        details = []
        for source, how in state.resolutions.items():
            deterministic = sum(n for kind, n in how.items() if kind not in ("new",
                                                                              "probabilistic"))
            parts = [f"{how['new']} new"]
            if deterministic:
                on = _counts({kind: n for kind, n in how.items()
                              if kind not in ("new", "probabilistic")})
                parts.append(f"{deterministic} matched deterministically (on {on})")
            if how["probabilistic"]:
                low = min(state.probabilistic_confidences)
                high = max(state.probabilistic_confidences)
                confidence = f"{low:.4f}" if low == high else f"{low:.4f} to {high:.4f}"
                parts.append(f"{how['probabilistic']} matched probabilistically (confidence "
                             f"{confidence})")
            details.append(f"{source:<8} {sum(how.values())} records: {'; '.join(parts)}")
        return StepReport(
            f"{received} records -> {customers} unified customers (BatchResolveIdentities)",
            tuple(details))

    # --- 2. profiles ------------------------------------------------------------------------

    async def ingest_profiles(self) -> StepReport:
        request = fragments_request(self.sample, self.now)
        reply = await self.profiles.IngestProfileFragments(request, timeout=RPC_SECONDS)
        records: list[CrmContact | ShopCustomer] = [*self.sample.crm, *self.sample.shop]
        elsewhere = 0
        for record, result in zip(records, reply.results, strict=True):
            if not result.HasField("ingested"):
                violations = "; ".join(f"{v.field}: {v.description}"
                                       for v in result.error.field_violations)
                raise StepFailed(f"the profile service refused the fragment of {record.id}: "
                                 f"{result.error.message} {violations}".strip())
            if result.ingested.customer_id != self.state.customer_of[record.id]:
                elsewhere += 1
        if elsewhere:
            raise StepFailed(f"{elsewhere} fragments landed on another customer than identity "
                             "chose for their record in step 1")
        profiles = len({result.ingested.customer_id for result in reply.results})
        return StepReport(
            f"{len(request.fragments)} fragments in one IngestProfileFragments call -> "
            f"{profiles} unified profiles",
            ("fragments name people by email, phone and platform id only; identity resolved "
             "each to the customer of step 1",))

    # --- 3. segments ------------------------------------------------------------------------

    async def create_segments(self) -> StepReport:
        details = []
        for file_name in EXAMPLE_SEGMENTS:
            created = await self.segmentation.CreateSegment(
                segmentation_pb2.CreateSegmentRequest(segment=example_segment(file_name)),
                timeout=RPC_SECONDS)
            segment = created.segment
            self.state.segments.append(segment)
            details.append(f"{segment.name} ({schedule_text(segment.schedule)}, "
                           f"to {', '.join(segment.sync_platforms)}): "
                           f"{criteria_text(segment.criteria)}")
        return StepReport(
            f"the {len(EXAMPLE_SEGMENTS)} examples of services/segmentation/examples created; "
            "membership follows every profile change from here on", tuple(details))

    # --- 4. mailchimp -----------------------------------------------------------------------

    async def sync_profiles(self) -> StepReport:
        await self.mailchimp.open()
        await self.mailchimp.add_webhook(self.endpoints.webhook_url)
        customers = sorted(set(self.state.customer_of.values()))
        replies = await bounded(
            self.profiles.SyncProfile(
                profile_pb2.SyncProfileRequest(customer_id=customer, source=CRM),
                timeout=RPC_SECONDS)
            for customer in customers
        )
        outcome: Counter[str] = Counter()
        for reply in replies:
            for result in reply.results:
                outcome[f"{result.platform} {'ok' if result.success else 'failed'}"] += 1
                if not result.success:
                    raise StepFailed(f"SyncProfile to {result.platform} failed: {result.error}")
        unsubscribing = set(self.sample.unsubscribes)
        for email in self.sample.unsubscribes:
            await self.mailchimp.unsubscribe(email)
        state = self.state
        state.expected_status = {
            customer: "unsubscribed" if state.member_email_of[customer] in unsubscribing
            else "subscribed"
            for customer in customers
        }

        async def statuses_on_profiles() -> int:
            profiles = await self._profiles(customers)
            return sum(
                1 for customer, attributes in profiles.items()
                if _path(attributes, "mailchimp.status") == state.expected_status[customer]
            )

        _, took_profiles = await wait_until(
            statuses_on_profiles, lambda matching: matching == len(customers),
            what="profiles carrying the status Mailchimp reported")
        announced = len(customers) + len(unsubscribing)

        async def stored_announcements() -> int:
            return len(await self._events(types=["email.subscribed", "email.unsubscribed"]))

        _, took_events = await wait_until(
            stored_announcements, lambda stored: stored >= announced,
            what="email.subscribed and email.unsubscribed events stored")
        return StepReport(
            f"{len(customers)} profiles synced with SyncProfile (source crm): {_counts(outcome)}",
            ("an audience webhook (sources user, admin and api) brings every subscribe and "
             "unsubscribe back to the suite",
             f"{len(unsubscribing)} people then unsubscribed (clicks simulated in the sandbox)",
             f"waited {_duration(max(took_profiles, took_events))} until every profile carried "
             f"its Mailchimp status and the {announced} webhook events were stored"))

    # --- 5. events --------------------------------------------------------------------------

    async def publish_events(self) -> StepReport:
        events = grpc_events(self.sample, self.now)
        reply = await self.router.PublishEvents(
            events_pb2.PublishEventsRequest(events=events), timeout=RPC_SECONDS)
        statuses = Counter(events_pb2.PublishStatus.Name(r.status).removeprefix("PUBLISH_STATUS_")
                           .lower() for r in reply.results)
        refused = [r for r in reply.results if r.status not in (
            events_pb2.PUBLISH_STATUS_ACCEPTED, events_pb2.PUBLISH_STATUS_DUPLICATE)]
        if refused:
            first = refused[0].error
            reasons = "; ".join(f"{v.field}: {v.description}" for v in first.field_violations)
            raise StepFailed(f"the router refused {len(refused)} of {len(events)} events, e.g. "
                             f"{refused[0].event_id}: {reasons or first.message}")
        by_type = Counter(event.type for event in events)
        identifies, views = tracking_batches(self.sample, self.now)
        token = base64.b64encode(f"{self.endpoints.write_key}:".encode()).decode()
        tracked = 0
        for body in (identifies, views):
            status, answer = await http("POST", f"{self.endpoints.tracking_url}/v1/batch",
                                        body, {"Authorization": f"Basic {token}"})
            if status != 200 or not isinstance(answer, dict) or answer.get("rejected"):
                raise StepFailed(f"POST /v1/batch answered {status}: {answer}")
            tracked += int(answer["accepted"]) + int(answer["duplicates"])
        kinds = Counter(message["type"] for message in identifies["batch"] + views["batch"])
        return StepReport(
            f"{len(events) + tracked} events published",
            (f"gRPC PublishEvents, one call: {len(events)} ({_counts(by_type)}): "
             f"{_counts(statuses)}",
             f"HTTP POST /v1/batch (Segment's format, the write key of source web), identifies "
             f"first: {tracked} ({_counts(kinds)}): 200 OK, {tracked} stored"))

    # --- 6. asynchronous effects ------------------------------------------------------------

    async def await_effects(self) -> StepReport:
        state = self.state
        stored = await self._events()
        targets_of = await bounded(
            (self.router.GetEvent(events_pb2.GetEventRequest(event_id=event.id),
                                  timeout=RPC_SECONDS) for event in stored),
            limit=32)
        state.routed = Counter(target for found in targets_of for target in found.targets)
        state.email_events_of = Counter(
            found.event.customer_id for found in targets_of if EMAIL_TARGET in found.targets)

        async def broadcast() -> tuple[int, dict[str, int]]:
            events = sum((await self._subjects("CDP_EVENTS", "cdp.events.>")).values())
            return events, await self._routed_on_nats()

        _, took_broadcast = await wait_until(
            broadcast, lambda seen: seen[0] == len(stored) and seen[1] == dict(state.routed),
            what="stored events on cdp.events.> and their routed copies on cdp.routed.>")

        orders = {state.customer_of[shop_id]: count
                  for shop_id, count in expected_order_counts(self.sample).items()}

        async def projected() -> tuple[bool, int]:
            settled = await self._settled(*TRIGGERS_CONSUMER)
            profiles = await self._profiles(sorted(orders))
            counted = sum(1 for customer, attributes in profiles.items()
                          if _path(attributes, "ecommerce.order_count") == orders[customer])
            return settled, counted

        _, took_triggers = await wait_until(
            projected, lambda seen: seen[0] and seen[1] == len(orders),
            what="triggers applied (consumer settled, order counts on the profiles)")

        expected_email = sum(state.email_events_of.values())
        strangers = set(state.email_events_of) - set(state.member_email_of)
        if strangers:
            raise StepFailed(f"{len(strangers)} customers with events routed to email are none "
                             "of the sample's: identity resolved an event to someone new")

        async def delivered() -> int:
            counts = await bounded(
                self.mailchimp.member_events(state.member_email_of[customer])
                for customer in state.email_events_of)
            return sum(counts)

        try:
            _, took_email = await wait_until(
                delivered, lambda count: count == expected_email,
                what="events routed to email delivered as Mailchimp member events")
        except StepFailed as error:
            failed = await self.connector.ListFailedOperations(
                connector_pb2.ListFailedOperationsRequest(limit=1000, include_permanent=True),
                timeout=RPC_SECONDS)
            raise StepFailed(f"{error}; the connector kept {len(failed.operations)} failed "
                             "operations (cdp mailchimp failed --include-permanent)") from None

        customers = sorted(set(state.customer_of.values()))

        async def segmentation_current() -> tuple[int, int, bool]:
            versions = sum(int(profile.version) for profile in
                           (await self._unified(customers)).values())
            published = (await self._subjects("CDP_PROFILE", "cdp.profile.updated")).get(
                "cdp.profile.updated", 0)
            return versions, published, await self._settled(*SEGMENTATION_CONSUMER)

        _, took_segments = await wait_until(
            segmentation_current, lambda seen: seen[1] >= seen[0] and seen[2],
            what="segmentation applied every profile change (versions, published, settled)")
        return StepReport(
            "every asynchronous effect arrived",
            (f"{len(stored)} stored events broadcast on cdp.events.>, and their "
             f"{sum(state.routed.values())} routed copies on cdp.routed.<target>: "
             f"{_duration(took_broadcast)}",
             f"triggers projected orders, carts, opens and traits onto the profiles "
             f"(order counts checked on {len(orders)}): {_duration(took_triggers)}",
             f"{expected_email} events routed to email are member events in Mailchimp: "
             f"{_duration(took_email)}",
             f"segmentation applied every profile change (realtime membership current): "
             f"{_duration(took_segments)}"))

    # --- 7. segment sync --------------------------------------------------------------------

    async def sync_segments(self) -> StepReport:
        details = []
        wanted: dict[str, int] = {}
        for segment in self.state.segments:
            synced = await self.segmentation.SyncSegment(
                segmentation_pb2.SyncSegmentRequest(segment_id=segment.id),
                timeout=RPC_SECONDS)
            for line in format_segment_sync(synced).splitlines():
                details.append(f"{segment.name}: {' '.join(line.split())}")
            if segment.schedule.kind == segmentation_pb2.SCHEDULE_KIND_REALTIME:
                details.append(f"{segment.name}: realtime, so the scheduler had sent its delta "
                               "as members entered")
            if not all(result.success for result in synced.results):
                raise StepFailed(f"SyncSegment of {segment.name} failed: " + "; ".join(details))
            got = await self.segmentation.GetSegment(
                segmentation_pb2.GetSegmentRequest(segment_id=segment.id), timeout=RPC_SECONDS)
            wanted[segment.name] = int(got.segment.member_count)
        _, took = await wait_until(
            self.mailchimp.static_segments,
            lambda found: all(found.get(name) == count for name, count in wanted.items()),
            what="Mailchimp static segments holding each segment's members")
        details.append(f"the static segments in Mailchimp hold every member: {_duration(took)}")
        return StepReport("both segments synced with SyncSegment", tuple(details))

    # --- 8. summary -------------------------------------------------------------------------

    async def summary(self) -> StepReport:
        state = self.state
        stored = Counter(event.type for event in await self._events())
        routed = await self._routed_on_nats()
        listed = await self.segmentation.ListSegments(segmentation_pb2.ListSegmentsRequest(),
                                                      timeout=RPC_SECONDS)
        audience = await self.mailchimp.member_statuses()
        static = await self.mailchimp.static_segments()
        customers = sorted(set(state.customer_of.values()))
        member_events = sum(await bounded(
            self.mailchimp.member_events(state.member_email_of[c]) for c in customers))
        failed = await self.connector.ListFailedOperations(
            connector_pb2.ListFailedOperationsRequest(limit=1000, include_permanent=True),
            timeout=RPC_SECONDS)
        shop = state.resolutions.get(SHOP, Counter())
        probabilistic = shop["probabilistic"]
        deterministic = sum(shop.values()) - shop["new"] - probabilistic
        example_id = state.customer_of[self.sample.profile_example]
        example = await self.profiles.GetUnifiedProfile(
            profile_pb2.GetUnifiedProfileRequest(customer_id=example_id), timeout=RPC_SECONDS)
        hidden = [path for path in example.profile.provenance
                  if path.rsplit(".", 1)[-1].lower() in PERSONAL_FIELDS]
        ours = {segment.name for segment in state.segments}
        tags = len(static) - len(ours & set(static))
        records = len(self.sample.crm) + len(self.sample.shop)
        rows = [
            ("records in", f"{records}  (crm {len(self.sample.crm)}, shopify "
                           f"{len(self.sample.shop)})"),
            ("unified customers", f"{len(customers)}  ({deterministic + probabilistic} shop "
                                  f"records joined a CRM contact: {deterministic} "
                                  f"deterministically, {probabilistic} probabilistically)"),
            ("events stored", f"{sum(stored.values())}  ({_counts(stored)})"),
            ("routed", f"{_counts(routed)}  (copies on cdp.routed.<target>)"),
            ("segments", "; ".join(f"{s.name}: {s.member_count} members"
                                   for s in listed.segments)),
            ("mailchimp", f"{sum(audience.values())} audience members ({_counts(audience)})"),
            ("", "static segments: " + "; ".join(f"{name}: {static.get(name, 0)} members"
                                                 for name in sorted(ours))
                 + f" (and {tags} tags from user.tags)"),
            ("", f"{member_events} member events; {len(failed.operations)} failed operations "
                 "at the connector"),
        ]
        width = max(len(label) for label, _ in rows)
        lines = ["summary (read back from the services and the Mailchimp sandbox)"]
        lines += [f"  {label:<{width}}  {text}" for label, text in rows]
        lines += ["", f"profile example ({self.sample.profile_example} in the CRM; names, "
                      "emails and phones hidden here, `cdp profile show` prints them):"]
        lines += ["  " + line for line in format_profile(example.profile,
                                                          hidden=hidden).splitlines()]
        self.summary_lines = lines
        return StepReport("figures read back from every service and the sandbox")

    def exploring(self, data_dir: str) -> str:
        example = self.state.customer_of[self.sample.profile_example]
        segment = self.state.segments[0].id if self.state.segments else "<segment id>"
        return "\n".join([
            "",
            "The suite keeps running with the sample data. In another terminal:",
            f"  ./cdp profile show {example}",
            f"  ./cdp identity show {example}",
            "  ./cdp segments list",
            f"  ./cdp segments show {segment} --members 10",
            f"  ./cdp events tail --data-dir {data_dir}",
            "  ./cdp mailchimp health",
            f"  ./cdp status --data-dir {data_dir}",
        ])

    # --- reading back -------------------------------------------------------------------------

    async def _events(self, *, types: Sequence[str] = ()) -> list[events_pb2.Event]:
        request = events_pb2.ListEventsRequest(filter=events_pb2.EventFilter(types=types))
        return [reply.event async for reply in self.router.ListEvents(request,
                                                                       timeout=RPC_SECONDS)]

    async def _unified(self, customers: Sequence[str]) -> dict[str, profile_pb2.UnifiedProfile]:
        replies = await bounded(
            (self.profiles.GetUnifiedProfile(
                profile_pb2.GetUnifiedProfileRequest(customer_id=customer), timeout=RPC_SECONDS)
             for customer in customers), limit=16)
        return {customer: reply.profile for customer, reply in zip(customers, replies,
                                                                    strict=True)}

    async def _profiles(self, customers: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {customer: json_format.MessageToDict(profile.attributes)
                for customer, profile in (await self._unified(customers)).items()}

    async def _subjects(self, stream: str, subjects: str) -> dict[str, int]:
        info = await self.js.stream_info(stream, subjects_filter=subjects)
        return dict(info.state.subjects or {})

    async def _routed_on_nats(self) -> dict[str, int]:
        per_target: Counter[str] = Counter()
        for subject, count in (await self._subjects("CDP_ROUTED", "cdp.routed.>")).items():
            per_target[subject.split(".")[2]] += count
        return dict(per_target)

    async def _settled(self, stream: str, durable: str) -> bool:
        """The durable consumer has applied and acknowledged everything on its subjects."""
        try:
            info = await self.js.consumer_info(stream, durable)
        except NotFoundError:
            return False
        return info.num_pending == 0 and info.num_ack_pending == 0


def _path(document: Mapping[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node
