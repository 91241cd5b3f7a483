"""What the handlers need from outside: a unit of work, the connectors, a clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cdp_segmentation.adapters.unit_of_work import SqlSegmentationUnitOfWork

# The stores are set-based SQL by design (the evaluation *is* SQL), so handlers work on the
# PostgreSQL unit of work itself; tests run them against a real PostgreSQL.
UnitOfWorkFactory = Callable[[], "SqlSegmentationUnitOfWork"]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class MemberFailure:
    # The customer id the connector reports the failure for.
    key: str
    error: str
    permanent: bool


@dataclass(frozen=True)
class MembershipReply:
    platform_segment_id: str
    added: int
    removed: int
    failures: tuple[MemberFailure, ...] = ()


class ConnectorPort(Protocol):
    async def sync_membership(
        self,
        platform: str,
        *,
        segment_id: str,
        segment_name: str,
        add: Sequence[tuple[str, str]],
        remove: Sequence[tuple[str, str]],
        full_resync: bool,
        timeout: float,
    ) -> MembershipReply:
        """Raises Unavailable when the call fails as a whole (nothing is known applied),
        FailedPrecondition when no connector is configured for `platform`."""
        ...
