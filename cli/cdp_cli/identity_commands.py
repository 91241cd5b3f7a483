"""`cdp identity ...`: resolve identifiers and show a customer's identity map."""

from __future__ import annotations

import argparse
from typing import Any

import grpc
from google.protobuf import json_format

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_cli.services import address_of, by_name


def add_parser(commands: Any) -> None:
    identity = commands.add_parser("identity", help="resolve identifiers, show identity maps")
    actions = identity.add_subparsers(dest="action", required=True, metavar="ACTION")

    resolve = actions.add_parser(
        "resolve", help="find or create the customer these identifiers belong to"
    )
    resolve.add_argument("--email")
    resolve.add_argument("--phone")
    resolve.add_argument("--user-id", help="your systems' authoritative customer id")
    resolve.add_argument("--anonymous-id")
    resolve.add_argument("--device-id")
    resolve.add_argument(
        "--platform-id",
        action="append",
        default=[],
        metavar="PLATFORM:ID",
        help="a platform's id for the customer, e.g. shopify:7781 (repeatable)",
    )
    resolve.add_argument("--source", default="", help="the platform the identifiers come from")
    resolve.set_defaults(func=run)

    resolve.add_argument("--given-name")
    resolve.add_argument("--family-name")
    resolve.add_argument("--birth-date", help="YYYY-MM-DD")
    resolve.add_argument("--postcode")
    resolve.add_argument("--probabilistic", action="store_true",
                         help="match on the personal attributes when no identifier matches")

    show = actions.add_parser("show", help="print a customer's identity map")
    show.add_argument("customer_id")
    show.set_defaults(func=run)

    merge = actions.add_parser("merge", help="merge two customers (the survivor rule decides)")
    merge.add_argument("customer_id")
    merge.add_argument("other_customer_id")
    merge.add_argument("--reason", default="", help="recorded in the merge log")
    merge.set_defaults(func=run)

    unmerge = actions.add_parser("unmerge", help="undo one merge from the merge log")
    unmerge.add_argument("merge_id")
    unmerge.set_defaults(func=run)

    forget = actions.add_parser(
        "forget", help="erase a customer (GDPR); its identifiers are suppressed afterwards"
    )
    forget.add_argument("customer_id")
    forget.set_defaults(func=run)

    merges = actions.add_parser("merges", help="the merge log of a customer, newest first")
    merges.add_argument("customer_id")
    merges.set_defaults(func=run)


def _platform_ids(values: list[str]) -> list[common_pb2.PlatformId]:
    ids = []
    for value in values:
        platform, sep, platform_id = value.partition(":")
        if not sep:
            raise ValueError(f"--platform-id {value!r} must look like PLATFORM:ID")
        ids.append(common_pb2.PlatformId(platform=platform, id=platform_id))
    return ids


def _resolve_request(args: argparse.Namespace) -> identity_pb2.ResolveIdentityRequest:
    return identity_pb2.ResolveIdentityRequest(
        identifiers=common_pb2.Identifiers(
            email=args.email or "",
            phone=args.phone or "",
            user_id=args.user_id or "",
            anonymous_id=args.anonymous_id or "",
            device_id=args.device_id or "",
            platform_ids=_platform_ids(args.platform_id),
        ),
        attributes=identity_pb2.PersonAttributes(
            given_name=args.given_name or "",
            family_name=args.family_name or "",
            birth_date=args.birth_date or "",
            postcode=args.postcode or "",
        ),
        source_platform=args.source,
        allow_probabilistic=args.probabilistic,
    )


def run(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(address_of(by_name("identity"))) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        response: Any
        if args.action == "resolve":
            response = stub.ResolveIdentity(_resolve_request(args), timeout=30)
        elif args.action == "show":
            response = stub.GetIdentityMap(
                identity_pb2.GetIdentityMapRequest(customer_id=args.customer_id), timeout=30
            )
        elif args.action == "merge":
            response = stub.MergeCustomers(
                identity_pb2.MergeCustomersRequest(
                    customer_id=args.customer_id,
                    other_customer_id=args.other_customer_id,
                    reason=args.reason,
                ),
                timeout=30,
            )
        elif args.action == "unmerge":
            response = stub.UnmergeCustomers(
                identity_pb2.UnmergeCustomersRequest(merge_id=args.merge_id), timeout=30
            )
        elif args.action == "forget":
            response = stub.ForgetCustomer(
                identity_pb2.ForgetCustomerRequest(customer_id=args.customer_id), timeout=30
            )
        else:
            response = stub.ListMerges(
                identity_pb2.ListMergesRequest(customer_id=args.customer_id), timeout=30
            )
        print(json_format.MessageToJson(response, indent=2))
    return 0
