"""Members synced per second into the Mailchimp sandbox, beside the bound Mailchimp's limits set.

With 200 ms of latency injected into every call, 10 simultaneous connections carrying 500
members each can move at most 10 x 500 / 0.2 s = 25,000 members/s: that is the floor the
figures are compared with. The connector and the sandbox run from their packaged pexes
(`./pants package services/connectors/mailchimp:mailchimp sandboxes/mailchimp:mailchimp-sandbox`
first), as `cdp up` runs them; the benchmark drives the connector over gRPC, then reads every
member back from the sandbox to check that none was lost or duplicated. It runs twice: clean,
and with 10% 429s and 2% 5xx injected. Beside the bound it prints a reference measured in
the same run: the SDK driven straight from 10 threads into the same sandbox, no connector, so
the connector's own cost reads as a ratio even when the machine is busy. 300,000 members by
default (about 12 s a run): long enough for a sustained rate, where at 100,000 the first
call's start and the last round's tail cost some five points.

    ./pants run bench/mailchimp_sync.py -- [--members 300000] [--request-size 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import threading
import urllib.request
from typing import Any

import grpc
import mailchimp_marketing
import psutil
from benchkit import MemorySampler, ratio_line, service_pids, stopwatch, suite_running
from google.protobuf.struct_pb2 import Struct

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp_embedded.nats import free_port

API_KEY = "0123456789abcdef0123456789abcdef-us1"
LIST_ID = "c0ffee0001"
LATENCY_MS = 200
CONNECTIONS, MEMBERS_PER_CALL = 10, 500
BOUND = CONNECTIONS * MEMBERS_PER_CALL / (LATENCY_MS / 1000)


def sandbox_request(base: str, method: str, path: str, body: Any = None, *, api: bool = False
                    ) -> Any:
    headers = {"Content-Type": "application/json"}
    if api:
        token = base64.b64encode(f"user:{API_KEY}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def requests_for(run: str, members: int, size: int) -> list[connector_pb2.PushProfilesRequest]:
    batches = []
    for start in range(0, members, size):
        profiles = []
        for n in range(start, min(start + size, members)):
            payload = Struct()
            payload.update({"merge_fields": {"FNAME": f"{run}-{n}", "LNAME": "Bench"}})
            profiles.append(connector_pb2.PlatformProfile(
                customer_id=f"{run}-{n}", email=f"m{n}@bench.example", payload=payload))
        batches.append(connector_pb2.PushProfilesRequest(profiles=profiles))
    return batches


def sdk_alone(base: str, members: int) -> float:
    """Members/s with the SDK driven straight from 10 threads, no connector: the reference
    measured in the same run, as the theoretical bound ignores the machine's speed and load."""
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": API_KEY, "server": "us1"})
    client.api_client.host = f"{base}/3.0"
    calls = iter(range(members // MEMBERS_PER_CALL))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                call = next(calls, None)
            if call is None:
                return
            client.lists.batch_list_members(LIST_ID, {"update_existing": True, "members": [
                {"email_address": f"sdk{call}-{n}@bench.example", "status_if_new": "subscribed",
                 "merge_fields": {"FNAME": f"sdk-{call}-{n}", "LNAME": "Bench"}}
                for n in range(MEMBERS_PER_CALL)]})

    threads = [threading.Thread(target=worker) for _ in range(CONNECTIONS)]
    with stopwatch() as elapsed:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return (members // MEMBERS_PER_CALL) * MEMBERS_PER_CALL / elapsed[0]


def audit(base: str, run: str, members: int) -> tuple[int, int, int]:
    """(members stored, distinct emails, members whose data is from this run)."""
    seen: list[str] = []
    current = 0
    offset = 0
    while True:
        page = sandbox_request(base, "GET", f"/3.0/lists/{LIST_ID}/members?count=1000"
                               f"&offset={offset}", api=True)
        batch = page["members"]
        seen.extend(m["email_address"] for m in batch)
        current += sum(1 for m in batch if m["merge_fields"]["FNAME"].startswith(f"{run}-"))
        offset += len(batch)
        if not batch or offset >= page["total_items"]:
            return len(seen), len(set(seen)), current


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    times = {}
    for name, pid in pids.items():
        usage = psutil.Process(pid).cpu_times()
        times[name] = usage.user + usage.system
    return times


async def one_run(stub: Any, base: str, run: str, members: int, size: int,
                  faults: dict[str, Any], in_flight: int, pids: dict[str, int]
                  ) -> tuple[float, str]:
    sandbox_request(base, "POST", "/_sandbox/reset")
    sandbox_request(base, "POST", "/_sandbox/faults", {
        "latency_ms": LATENCY_MS, "rate_429": 0.0, "rate_5xx": 0.0, "seed": 1, **faults})
    sandbox_request(base, "POST", "/_sandbox/stats/reset")
    requests = requests_for(run, members, size)
    gate = asyncio.Semaphore(in_flight)
    failed = 0

    async def send(request: connector_pb2.PushProfilesRequest) -> None:
        nonlocal failed
        async with gate:
            response = await stub.PushProfiles(request, timeout=600)
            failed += sum(1 for r in response.results if not r.success)

    before = cpu_seconds(pids)
    with stopwatch() as elapsed:
        await asyncio.gather(*(send(r) for r in requests))
    after = cpu_seconds(pids)
    cpu = ", ".join(f"{name} {after[name] - before[name]:.1f} s" for name in pids)
    stats = sandbox_request(base, "GET", "/_sandbox/stats")
    sandbox_request(base, "POST", "/_sandbox/faults", {"latency_ms": 0, "rate_429": 0.0,
                                                       "rate_5xx": 0.0})
    stored, distinct, current = await asyncio.to_thread(audit, base, run, members)
    rate = members / elapsed[0]
    verdict = "ok" if (failed == 0 and stored == distinct == current == members) else "LOST/DUP"
    detail = (
        f"  {members:,} members in {elapsed[0]:.2f} s; failed {failed}; sandbox holds {stored:,} "
        f"({distinct:,} distinct, {current:,} with this run's data) -> {verdict}\n"
        f"  calls {stats['requests']:,}, peak in flight {stats['peak_in_flight']}, injected "
        f"{stats['injected']}; CPU used: {cpu}"
    )
    return rate, detail


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=300_000)
    parser.add_argument("--request-size", type=int, default=5_000)
    parser.add_argument("--requests-in-flight", type=int, default=4)
    args = parser.parse_args()
    env = {
        "MAILCHIMP_ACTIVITY_INTERVAL_SECONDS": "0",
        "MAILCHIMP_WEBHOOK_PORT": str(free_port()),
        "CDP_LOG_LEVEL": "WARNING",
        "MAILCHIMP_RETRY_BASE_SECONDS": "0.05",
    }
    async with suite_running(["mailchimp_sandbox", "mailchimp"], extra_env=env) as suite:
        addresses = {s.spec.name: s.address for s in suite.services}
        base = f"http://{addresses['mailchimp_sandbox']}"
        pids = service_pids(suite)
        async with grpc.aio.insecure_channel(
            addresses["mailchimp"],
            options=[("grpc.max_send_message_length", 64 * 2**20),
                     ("grpc.max_receive_message_length", 64 * 2**20)],
        ) as channel:
            stub = connector_pb2_grpc.ConnectorServiceStub(channel)
            with MemorySampler(pids, stand_ins=frozenset({"mailchimp_sandbox"})) as memory:
                clean, clean_detail = await one_run(
                    stub, base, "clean", args.members, args.request_size, {},
                    args.requests_in_flight, pids)
                sandbox_request(base, "POST", "/_sandbox/reset")
                sandbox_request(base, "POST", "/_sandbox/faults", {
                    "latency_ms": LATENCY_MS, "rate_429": 0.0, "rate_5xx": 0.0})
                reference = await asyncio.to_thread(sdk_alone, base, args.members)
                faulty, faulty_detail = await one_run(
                    stub, base, "faults", args.members, args.request_size,
                    {"rate_429": 0.10, "rate_5xx": 0.02}, args.requests_in_flight, pids)
    print(f"mailchimp sync, {LATENCY_MS} ms per call, bound {CONNECTIONS} connections x "
          f"{MEMBERS_PER_CALL} members / {LATENCY_MS / 1000} s = {BOUND:,.0f} members/s")
    print(ratio_line("clean", clean, BOUND, "members/s", "goal >= 80%"))
    print(clean_detail)
    print(f"  the SDK alone from {CONNECTIONS} threads, same sandbox, same run: "
          f"{reference:,.0f} members/s ({reference / BOUND:.1%} of the bound); the connector "
          f"reaches {clean / reference:.1%} of it")
    print(ratio_line("10% 429 + 2% 5xx", faulty, BOUND, "members/s", "goal >= 80%"))
    print(faulty_detail)
    print(memory.report())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
