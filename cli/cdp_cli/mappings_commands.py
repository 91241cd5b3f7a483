"""`cdp mappings check FILE`: validate a field-mapping file before the profile service loads it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cdp_mappings import DEFAULT_PLATFORMS, ConfigError, load_mappings


def add_parser(commands: Any) -> None:
    mappings = commands.add_parser("mappings", help="validate field-mapping files")
    actions = mappings.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="report every problem of a mapping file (file:line: entry: problem); exit 1 if any",
        description="Checks paths, transforms, Mailchimp merge tags (at most 10 characters) "
        "and platform names, as the profile service does when it starts.",
    )
    check.add_argument("file", type=Path)
    check.add_argument(
        "--platforms",
        help="comma-separated platform names (default: CDP_PLATFORMS, else the suite's list)",
    )
    check.set_defaults(func=run)


def platforms_from(value: str | None) -> tuple[str, ...]:
    raw = value or os.environ.get("CDP_PLATFORMS", "")
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    return names or DEFAULT_PLATFORMS


def run(args: argparse.Namespace) -> int:
    try:
        mappings = load_mappings(args.file, platforms=platforms_from(args.platforms))
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        count = len(error.problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    summary = ", ".join(f"{m.source} -> {m.target} ({len(m.fields)} fields)" for m in mappings)
    print(f"{args.file}: ok: {len(mappings.mappings)} mapping(s){': ' if summary else ''}{summary}")
    return 0
