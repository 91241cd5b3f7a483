"""`cdp mailchimp ...`: the connector's health and its failed operations."""

from __future__ import annotations

import argparse
from typing import Any

import grpc
from google.protobuf import json_format

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp_cli.services import address_of, by_name


def add_parser(commands: Any) -> None:
    mailchimp = commands.add_parser(
        "mailchimp", help="Mailchimp connector: health, failed operations and their retry"
    )
    actions = mailchimp.add_subparsers(dest="action", required=True, metavar="ACTION")
    health = actions.add_parser("health", help="ping Mailchimp: latency and circuit state")
    health.set_defaults(func=run)
    failed = actions.add_parser("failed", help="list operations Mailchimp refused or missed")
    failed.add_argument("--limit", type=int, default=20)
    failed.add_argument("--include-permanent", action="store_true",
                        help="also those retrying cannot help (kept for review)")
    failed.set_defaults(func=run)
    retry = actions.add_parser("retry", help="run failed operations again")
    retry.add_argument("ids", nargs="*", help="operation ids; every retryable one when none")
    retry.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(address_of(by_name("mailchimp"))) as channel:
        stub = connector_pb2_grpc.ConnectorServiceStub(channel)
        response: Any
        if args.action == "health":
            response = stub.GetConnectorHealth(connector_pb2.GetConnectorHealthRequest(),
                                               timeout=30)
        elif args.action == "failed":
            response = stub.ListFailedOperations(
                connector_pb2.ListFailedOperationsRequest(
                    limit=args.limit, include_permanent=args.include_permanent
                ),
                timeout=30,
            )
        else:
            response = stub.RetryFailedOperations(
                connector_pb2.RetryFailedOperationsRequest(operation_ids=args.ids), timeout=600
            )
        print(json_format.MessageToJson(response, indent=2))
    return 0
