"""The services `cdp up` runs: only those that exist. A new service is one entry here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    # The pex built by `./pants package` (output_path "cdp/<binary>.pex").
    binary: str
    port: int
    # The gRPC service a client calls, for `cdp call <name> ...` and status checks.
    grpc_service: str
    needs_database: bool = True
    needs_nats: bool = True
    # How readiness is checked: "grpc" (the standard health service) or "http" (a GET of
    # `health_path` answering 200), for stand-ins that are not gRPC servers.
    health: str = "grpc"
    health_path: str = ""
    # The variable that carries the port to the process.
    port_env: str = "CDP_GRPC_PORT"
    # Not started when this variable is set (a sandbox when the real platform is configured).
    skip_if_env: str = ""
    # Variables every other service gets when this one runs; "{address}" is its host:port.
    exports: tuple[tuple[str, str], ...] = ()


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="identity",
        binary="identity.pex",
        port=50051,
        grpc_service="cdp.identity.v1.IdentityService",
    ),
    ServiceSpec(
        name="event_router",
        binary="event-router.pex",
        port=50053,
        # Its Segment-compatible HTTP tracking API listens beside it, on 50153
        # (CDP_EVENTS_HTTP_PORT).
        grpc_service="cdp.events.v1.EventRouterService",
    ),
    ServiceSpec(
        name="profile",
        binary="profile.pex",
        port=50052,
        grpc_service="cdp.profile.v1.ProfileService",
    ),
    ServiceSpec(
        name="segmentation",
        binary="segmentation.pex",
        port=50054,
        grpc_service="cdp.segmentation.v1.SegmentationService",
    ),
    # The local Mailchimp stand-in, only when no real Mailchimp is configured.
    ServiceSpec(
        name="mailchimp_sandbox",
        binary="mailchimp-sandbox.pex",
        port=50160,
        grpc_service="",
        needs_database=False,
        needs_nats=False,
        health="http",
        health_path="/_sandbox/health",
        port_env="MAILCHIMP_SANDBOX_PORT",
        skip_if_env="MAILCHIMP_API_KEY",
        exports=(
            ("MAILCHIMP_API_URL", "http://{address}/3.0"),
            # The one key the sandbox accepts; it guards nothing outside this machine.
            ("MAILCHIMP_API_KEY", "0123456789abcdef0123456789abcdef-us1"),
        ),
    ),
    ServiceSpec(
        name="mailchimp",
        binary="mailchimp.pex",
        port=50061,
        # Consumes the events routed to the `email` role from JetStream.
        grpc_service="cdp.connector.v1.ConnectorService",
    ),
)


def port_of(spec: ServiceSpec, environ: dict[str, str] | None = None) -> int:
    """The port a service listens on: `CDP_<NAME>_PORT` when set, else its default."""
    raw = (environ if environ is not None else os.environ).get(f"CDP_{spec.name.upper()}_PORT")
    return int(raw) if raw else spec.port


def address_of(spec: ServiceSpec) -> str:
    """Where the CLI finds a service: `CDP_<NAME>_ADDR`, else localhost on its port."""
    return os.environ.get(f"CDP_{spec.name.upper()}_ADDR", f"127.0.0.1:{port_of(spec)}")


class AreaCommands(Protocol):
    """A `cli/cdp_cli/<area>_commands.py` module."""

    def add_parser(self, commands: Any) -> None: ...


def by_name(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in SERVICES)
    raise KeyError(f"unknown service {name!r}; known: {known}")
