"""Where each platform's connector listens, as the environment tells it.

An operator names a connector as CDP_CONNECTOR_<PLATFORM>_ADDR; `cdp up` tells every service
where each other service listens as CDP_<NAME>_ADDR, and a connector service is named after
its platform, so CDP_<PLATFORM>_ADDR is the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$|^unix:.+$")


def connector_variable(platform: str) -> str:
    return f"CDP_CONNECTOR_{platform.upper().replace('-', '_')}_ADDR"


def service_variable(platform: str) -> str:
    return f"CDP_{platform.upper().replace('-', '_')}_ADDR"


def connector_addresses(
    platforms: Iterable[str], environ: Mapping[str, str]
) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """(platform, host:port) for each of `platforms` whose connector `environ` names, and a
    problem naming each variable whose value is not host:port (or unix:<path>)."""
    addresses: list[tuple[str, str]] = []
    problems: list[str] = []
    for platform in platforms:
        variable = connector_variable(platform)
        raw = environ.get(variable, "").strip()
        if not raw:
            variable = service_variable(platform)
            raw = environ.get(variable, "").strip()
        if not raw:
            continue
        if not _HOST_PORT.match(raw):
            problems.append(f"{variable}={raw!r} is not host:port")
            continue
        addresses.append((platform, raw))
    return tuple(addresses), problems
