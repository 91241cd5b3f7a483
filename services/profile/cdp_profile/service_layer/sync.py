"""Syncing a unified profile to every target platform at once.

The profile is mapped once per target (every mapping into that target, the triggering
source's last so it wins where two write the same path) and sent to all targets
concurrently, each under its own deadline. A target that fails, refuses or hangs yields its
own failed result; it never fails, delays past its deadline or cancels the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cdp_errors import DomainError, FieldViolation, InvalidArgument
from cdp_mappings import MappingSet, apply_fields, pop_path
from cdp_mappings.targets import rules_for
from cdp_profile.domain.model import UnifiedProfile
from cdp_profile.service_layer.ingestion import utc_now
from cdp_profile.service_layer.ports import ConnectorPort, PlatformRecord, PushOutcome
from cdp_profile.service_layer.queries import ProfileQueries
from cdp_telemetry import redact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlatformSyncOutcome:
    platform: str
    success: bool
    error: str
    permanent: bool
    synced_at: datetime
    records_synced: int = 0
    records_failed: int = 0


class ProfileSyncer:
    def __init__(
        self,
        queries: ProfileQueries,
        connectors: ConnectorPort,
        *,
        mappings: MappingSet,
        platforms: frozenset[str],
        target_timeout: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._queries = queries
        self._connectors = connectors
        self._mappings = mappings
        self._platforms = platforms
        self._timeout = target_timeout
        self._clock = clock

    def _targets(self, source: str, requested: Sequence[str]) -> list[str]:
        violations: list[FieldViolation] = []
        if not source:
            violations.append(FieldViolation("source", "is required (the platform that changed)"))
        elif source not in self._platforms:
            violations.append(FieldViolation("source", f"unknown platform {source[:40]!r}"))
        chosen: list[str] = []
        for index, raw in enumerate(requested):
            target = raw.strip().lower()
            if target not in self._platforms:
                violations.append(
                    FieldViolation(f"targets[{index}]", f"unknown platform {target[:40]!r}")
                )
            elif target == source:
                violations.append(
                    FieldViolation(
                        f"targets[{index}]", "is the source; a sync never goes back to it"
                    )
                )
            elif target not in chosen:
                chosen.append(target)
        if violations:
            raise InvalidArgument(violations)
        if requested:
            return chosen
        return [target for target in self._mappings.targets() if target != source]

    async def sync(
        self, customer_id: str, source: str, targets: Sequence[str] = ()
    ) -> list[PlatformSyncOutcome]:
        source = source.strip().lower()
        chosen = self._targets(source, targets)
        profile = await self._queries.unified_profile(customer_id)
        outcomes = await asyncio.gather(
            *(self._sync_one(profile, source, target) for target in chosen)
        )
        return list(outcomes)

    def _record(self, profile: UnifiedProfile, source: str, target: str) -> PlatformRecord | None:
        entries = self._mappings.into(target, preferred_source=source)
        if not entries:
            return None
        mapped = apply_fields(entries, profile.attributes)
        for skipped in mapped.skipped:
            logger.warning(
                "left a field out of a sync: %s",
                skipped.reason,
                extra={
                    "platform": target,
                    "field": skipped.source,
                    "customer_id": profile.customer_id,
                },
            )
        rules = rules_for(target)
        # The email travels beside the payload (the Connector contract's own field), not in it.
        email = pop_path(mapped.payload, rules.email_path) if rules.email_path else None
        return PlatformRecord(
            customer_id=profile.customer_id,
            email=email if isinstance(email, str) else "",
            payload=mapped.payload,
            fields=self._mappings.platform_fields.get(target, ()),
        )

    async def _sync_one(
        self, profile: UnifiedProfile, source: str, target: str
    ) -> PlatformSyncOutcome:
        started = time.monotonic()
        record = self._record(profile, source, target)
        if record is None:
            return self._failed(target, f"no field mapping writes to {target}", permanent=True)
        if not self._connectors.knows(target):
            return self._failed(
                target,
                f"no connector address configured for {target} "
                f"(CDP_CONNECTOR_{target.upper()}_ADDR)",
                permanent=True,
            )
        try:
            outcome = await asyncio.wait_for(
                self._connectors.push(target, record, timeout=self._timeout),
                timeout=self._timeout,
            )
        except TimeoutError:
            result = self._failed(target, f"no answer within {self._timeout:g} s", permanent=False)
        except DomainError as error:
            result = self._failed(target, redact(str(error))[:500], permanent=False)
        except Exception as error:  # one broken target must not take the others down
            logger.exception("sync to a target failed unexpectedly", extra={"platform": target})
            result = self._failed(
                target, f"unexpected error: {type(error).__name__}", permanent=False
            )
        else:
            result = self._done(target, outcome)
        logger.info(
            "synced a profile to a platform",
            extra={
                "platform": target,
                "customer_id": profile.customer_id,
                "success": result.success,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return result

    def _failed(self, target: str, error: str, *, permanent: bool) -> PlatformSyncOutcome:
        return PlatformSyncOutcome(target, False, error, permanent, self._clock(), 0, 1)

    def _done(self, target: str, outcome: PushOutcome) -> PlatformSyncOutcome:
        return PlatformSyncOutcome(
            platform=target,
            success=outcome.success,
            error=redact(outcome.error)[:500],
            permanent=outcome.permanent,
            synced_at=self._clock(),
            records_synced=outcome.records_synced,
            records_failed=outcome.records_failed,
        )
