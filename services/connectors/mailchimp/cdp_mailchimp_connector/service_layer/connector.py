"""The Connector contract for Mailchimp: profiles, fields, events, segments, fetch, delete,
health and failed operations.

Calls fan out over one account's connection budget (`MailchimpApi` holds the semaphore);
what Mailchimp refuses for good is reported per record as permanent, what could not be done
now is recorded as a failed operation to retry later, and nothing in an error message is
personal data (Mailchimp's own messages are redacted on the way in).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from cdp_errors import FieldViolation, InvalidArgument, NotFound, Unavailable
from cdp_mailchimp_connector.adapters.mailchimp_api import MailchimpApi, MailchimpError
from cdp_mailchimp_connector.domain.model import (
    MAILCHIMP_TYPE,
    MAX_MEMBERS_PER_BATCH,
    MAX_SEGMENT_DELTA,
    MERGE_TAG_MAX,
    EnsureFieldsResult,
    FailedOperation,
    FieldSpec,
    Health,
    HealthStatus,
    MemberEvent,
    MemberUpsert,
    NewFailure,
    OperationKind,
    RecordOutcome,
    RetryResult,
    SegmentSync,
    SegmentSyncResult,
    subscriber_hash,
)
from cdp_mailchimp_connector.domain.profiles import MERGE_TAG, RawProfile, check_email, to_upserts
from cdp_mailchimp_connector.service_layer.ports import FailureStore, SegmentMap
from cdp_resilience import CircuitOpenError, RetryPolicy
from cdp_telemetry import fingerprint

logger = logging.getLogger(__name__)

HASH = re.compile(r"^[0-9a-f]{32}$")
HEALTH_POLICY = RetryPolicy(max_attempts=1)
SLOW_PING_MS = 2000.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AudienceInfo:
    list_id: str
    double_optin: bool
    merge_tags: dict[str, str]  # tag -> Mailchimp type


def _reason(error: Exception) -> str:
    if isinstance(error, CircuitOpenError):
        return "Mailchimp circuit open: calls paused after repeated failures"
    return str(error)


def _failed_now(error: Exception) -> tuple[str, bool]:
    """(message, permanent) for an error that failed a whole call."""
    if isinstance(error, MailchimpError):
        return str(error), not error.retryable
    return _reason(error), False


def event_failure(event: MemberEvent, error: str, permanent: bool) -> NewFailure:
    """A member event that failed, kept with enough to deliver it again."""
    return NewFailure(
        OperationKind.DELIVER_EVENT, event.event_id,
        {"email": event.email, "name": event.name, "properties": event.properties,
         "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None},
        error, permanent,
    )


class MailchimpConnector:
    def __init__(
        self,
        api: MailchimpApi,
        *,
        list_id: str,
        failures: FailureStore,
        segments: SegmentMap,
        batch_operations_threshold: int = 20_000,
        batch_poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.api = api
        self._configured_list_id = list_id
        self.failures = failures
        self.segments = segments
        self.batch_operations_threshold = batch_operations_threshold
        self.batch_poll_seconds = batch_poll_seconds
        self._clock = clock
        self._audience: AudienceInfo | None = None
        self._audience_lock = asyncio.Lock()

    # ---- audience -------------------------------------------------------------------------

    async def audience(self, *, refresh: bool = False) -> AudienceInfo:
        """The audience the connector writes to, with its opt-in mode and merge fields."""
        async with self._audience_lock:
            if self._audience is not None and not refresh:
                return self._audience
            list_id = self._configured_list_id
            try:
                if not list_id:
                    lists = await self.api.call(
                        "GET /lists", lambda c: c.lists.get_all_lists(count=1, fields=["lists.id"])
                    )
                    found = (lists or {}).get("lists") or []
                    if not found:
                        raise NotFound("Mailchimp audience", "(the account has none)")
                    list_id = str(found[0]["id"])
                info = await self.api.call("GET /lists/{id}", lambda c: c.lists.get_list(list_id))
                fields = await self.api.call(
                    "GET /lists/{id}/merge-fields",
                    lambda c: c.lists.get_list_merge_fields(list_id, count=1000),
                )
            except MailchimpError as error:
                if error.not_found:
                    raise NotFound("Mailchimp audience", list_id) from None
                raise Unavailable(f"cannot read the Mailchimp audience: {error}") from None
            except CircuitOpenError as error:
                raise Unavailable(_reason(error)) from None
            self._audience = AudienceInfo(
                list_id=list_id,
                double_optin=bool((info or {}).get("double_optin", False)),
                merge_tags={
                    str(f["tag"]): str(f["type"]) for f in (fields or {}).get("merge_fields", [])
                },
            )
            return self._audience

    # ---- profiles -------------------------------------------------------------------------

    async def push_profiles(self, profiles: Sequence[RawProfile]) -> list[RecordOutcome]:
        info = await self.audience()
        upserts, violations = await self._checked(profiles, info)
        if any("EnsureFields" in v.description for v in violations):
            # Another replica (or the Mailchimp app) may have added the field since.
            info = await self.audience(refresh=True)
            upserts, violations = await self._checked(profiles, info)
        if violations:
            raise InvalidArgument(violations)
        chunks = [
            upserts[start : start + MAX_MEMBERS_PER_BATCH]
            for start in range(0, len(upserts), MAX_MEMBERS_PER_BATCH)
        ]
        if len(upserts) > self.batch_operations_threshold:
            outcomes = await self._push_through_batches(info.list_id, chunks)
        else:
            results = await asyncio.gather(
                *(self._push_chunk(info.list_id, chunk) for chunk in chunks)
            )
            outcomes = {o.key: o for chunk_outcomes in results for o in chunk_outcomes}
        await self._record_profile_failures(upserts, outcomes)
        return [outcomes[u.customer_id] for u in upserts]

    @staticmethod
    async def _checked(
        profiles: Sequence[RawProfile], info: AudienceInfo
    ) -> tuple[list[MemberUpsert], list[FieldViolation]]:
        if len(profiles) <= MAX_MEMBERS_PER_BATCH:
            return to_upserts(profiles, double_optin=info.double_optin,
                              known_tags=info.merge_tags)
        # Checking thousands of profiles takes tens of milliseconds; on the event loop that
        # would hold back the completion of every Mailchimp call in flight (a fifth of the
        # throughput at 25,000 members/s). On a worker thread the interpreter lets the loop in
        # every few milliseconds.
        return await asyncio.to_thread(
            to_upserts, profiles, double_optin=info.double_optin, known_tags=info.merge_tags
        )

    @staticmethod
    def _batch_body(chunk: Sequence[MemberUpsert]) -> dict[str, Any]:
        members = []
        for upsert in chunk:
            body = upsert.member_body()
            active = [t.name for t in upsert.tags if t.active]
            if active:
                body["tags"] = active
            members.append(body)
        return {"members": members, "update_existing": True, "sync_tags": False}

    def _batch_outcomes(
        self, chunk: Sequence[MemberUpsert], reply: dict[str, Any] | None
    ) -> dict[str, RecordOutcome]:
        refused: dict[str, str] = {}
        for error in (reply or {}).get("errors") or []:
            email = str(error.get("email_address", "")).strip().lower()
            message = MailchimpError(400, str(error.get("error_code") or "ERROR_GENERIC"),
                                     str(error.get("error", "")))
            field = error.get("field")
            refused[email] = f"{message}" + (f" (field {field})" if field else "")
        outcomes = {}
        for upsert in chunk:
            reason = refused.get(upsert.email.lower())
            outcomes[upsert.customer_id] = (
                RecordOutcome(upsert.customer_id, False, reason, permanent=True)
                if reason is not None
                else RecordOutcome.ok(upsert.customer_id)
            )
        return outcomes

    async def _push_chunk(self, list_id: str, chunk: Sequence[MemberUpsert]) -> list[RecordOutcome]:
        body = self._batch_body(chunk)
        try:
            reply = await self.api.call(
                "POST /lists/{id}", lambda c: c.lists.batch_list_members(list_id, body)
            )
        except (MailchimpError, CircuitOpenError) as error:
            message, permanent = _failed_now(error)
            return [RecordOutcome(u.customer_id, False, message, permanent) for u in chunk]
        outcomes = self._batch_outcomes(chunk, reply)
        await self._apply_inactive_tags(list_id, chunk, outcomes)
        return list(outcomes.values())

    async def _apply_inactive_tags(
        self, list_id: str, chunk: Sequence[MemberUpsert], outcomes: dict[str, RecordOutcome]
    ) -> None:
        """Tag removals: the batch endpoint only adds tags, so these go member by member."""
        pending = [
            u for u in chunk
            if outcomes[u.customer_id].success and any(not t.active for t in u.tags)
        ]

        async def remove(upsert: MemberUpsert) -> None:
            body = {
                "tags": [{"name": t.name, "status": "inactive"} for t in upsert.tags
                         if not t.active],
                "is_syncing": True,
            }
            try:
                await self.api.call(
                    "POST /lists/{id}/members/{hash}/tags",
                    lambda c: c.lists.update_list_member_tags(list_id, upsert.subscriber_hash,
                                                              body),
                )
            except (MailchimpError, CircuitOpenError) as error:
                message, permanent = _failed_now(error)
                outcomes[upsert.customer_id] = RecordOutcome(
                    upsert.customer_id, False, f"tags: {message}", permanent
                )

        await asyncio.gather(*(remove(u) for u in pending))

    async def _push_through_batches(
        self, list_id: str, chunks: Sequence[Sequence[MemberUpsert]]
    ) -> dict[str, RecordOutcome]:
        """Large work as one `/batches` job: each operation is one 500-member batch call."""
        operations = [
            {
                "method": "POST",
                "path": f"/lists/{list_id}",
                "operation_id": str(index),
                "body": json.dumps(self._batch_body(chunk)),
            }
            for index, chunk in enumerate(chunks)
        ]
        outcomes: dict[str, RecordOutcome] = {}
        try:
            started = await self.api.call(
                "POST /batches", lambda c: c.batches.start({"operations": operations})
            )
            batch_id = str((started or {})["id"])
            status = started or {}
            while status.get("status") != "finished":
                await asyncio.sleep(self.batch_poll_seconds)
                status = await self.api.call(
                    "GET /batches/{id}", lambda c: c.batches.status(batch_id)
                ) or {}
            results = await asyncio.to_thread(_download_results, str(status["response_body_url"]))
        except (MailchimpError, CircuitOpenError, OSError, KeyError, ValueError) as error:
            message, permanent = _failed_now(error) if isinstance(
                error, (MailchimpError, CircuitOpenError)) else (f"batch results: {error}", False)
            return {
                u.customer_id: RecordOutcome(u.customer_id, False, message, permanent)
                for chunk in chunks for u in chunk
            }
        by_operation = {str(r.get("operation_id")): r for r in results}
        for index, chunk in enumerate(chunks):
            result = by_operation.get(str(index))
            if result is None or int(result.get("status_code", 0)) >= 400:
                status_code = result.get("status_code") if result else "no result"
                failure = MailchimpError(
                    int(status_code) if isinstance(status_code, int) else None,
                    "batch operation failed",
                )
                for u in chunk:
                    outcomes[u.customer_id] = RecordOutcome(
                        u.customer_id, False, str(failure), not failure.retryable
                    )
                continue
            reply = json.loads(result.get("response") or "{}")
            outcomes.update(self._batch_outcomes(chunk, reply))
            await self._apply_inactive_tags(list_id, chunk, outcomes)
        return outcomes

    async def _record_profile_failures(
        self, upserts: Sequence[MemberUpsert], outcomes: dict[str, RecordOutcome]
    ) -> None:
        failures = [
            NewFailure(
                OperationKind.PUSH_PROFILE,
                u.customer_id,
                u.to_record(),
                outcomes[u.customer_id].error,
                outcomes[u.customer_id].permanent,
            )
            for u in upserts
            if not outcomes[u.customer_id].success
        ]
        if failures:
            await self.failures.record(failures, self._clock())
            logger.warning(
                "%d of %d profiles failed on Mailchimp (%d permanent); recorded for review",
                len(failures), len(upserts), sum(f.permanent for f in failures),
            )

    async def upsert_one(self, upsert: MemberUpsert) -> None:
        """One member by PUT (the retry path): the member, then its tags."""
        info = await self.audience()
        await self.api.call(
            "PUT /lists/{id}/members/{hash}",
            lambda c: c.lists.set_list_member(info.list_id, upsert.subscriber_hash,
                                              upsert.member_body()),
        )
        if upsert.tags:
            body = {
                "tags": [{"name": t.name, "status": "active" if t.active else "inactive"}
                         for t in upsert.tags],
                "is_syncing": True,
            }
            await self.api.call(
                "POST /lists/{id}/members/{hash}/tags",
                lambda c: c.lists.update_list_member_tags(info.list_id, upsert.subscriber_hash,
                                                          body),
            )

    # ---- merge fields ---------------------------------------------------------------------

    async def ensure_fields(self, specs: Sequence[FieldSpec]) -> EnsureFieldsResult:
        violations: list[FieldViolation] = []
        seen: set[str] = set()
        for index, spec in enumerate(specs):
            if not MERGE_TAG.match(spec.tag):
                violations.append(FieldViolation(
                    f"fields[{index}].tag",
                    f"must be upper case, at most {MERGE_TAG_MAX} characters, starting with a "
                    "letter (letters, digits, _)",
                ))
            elif spec.tag in seen:
                violations.append(FieldViolation(f"fields[{index}].tag", "appears twice"))
            seen.add(spec.tag)
            if not spec.name.strip():
                violations.append(FieldViolation(f"fields[{index}].name", "is required"))
        if violations:
            raise InvalidArgument(violations)
        info = await self.audience(refresh=True)
        for index, spec in enumerate(specs):
            existing = info.merge_tags.get(spec.tag)
            if existing is not None and existing != MAILCHIMP_TYPE[spec.kind]:
                violations.append(FieldViolation(
                    f"fields[{index}].type",
                    f"merge tag {spec.tag} already exists with type {existing}",
                ))
        if violations:
            raise InvalidArgument(violations)
        missing = [spec for spec in specs if spec.tag not in info.merge_tags]
        created: list[str] = []
        try:
            for spec in missing:
                await self.api.call(
                    "POST /lists/{id}/merge-fields",
                    lambda c, spec=spec: c.lists.add_list_merge_field(  # type: ignore[misc]
                        info.list_id, spec.create_body()
                    ),
                )
                created.append(spec.tag)
                info.merge_tags[spec.tag] = MAILCHIMP_TYPE[spec.kind]
        except MailchimpError as error:
            if error.retryable:
                raise Unavailable(f"merge fields: {error}") from None
            raise InvalidArgument.single("fields", f"Mailchimp refused a merge field: {error}"
                                         ) from None
        except CircuitOpenError as error:
            raise Unavailable(_reason(error)) from None
        return EnsureFieldsResult(
            created=tuple(created),
            existing=tuple(s.tag for s in specs if s.tag not in created),
        )

    # ---- events ---------------------------------------------------------------------------

    async def deliver_events(
        self, events: Sequence[MemberEvent | tuple[str, str]]
    ) -> list[RecordOutcome]:
        """Events in order; an unusable one arrives as (event id, reason) and fails for good."""
        info = await self.audience()

        async def deliver(item: MemberEvent | tuple[str, str]) -> RecordOutcome:
            if isinstance(item, tuple):
                return RecordOutcome(item[0], False, item[1], permanent=True)
            return await self._deliver_one(info.list_id, item)

        outcomes = list(await asyncio.gather(*(deliver(e) for e in events)))
        failures = [
            event_failure(e, o.error, o.permanent)
            for e, o in zip(events, outcomes, strict=True)
            if isinstance(e, MemberEvent) and not o.success
        ]
        if failures:
            await self.failures.record(failures, self._clock())
        return outcomes

    async def deliver_event(self, event: MemberEvent) -> RecordOutcome:
        """One member event, failures reported and not recorded: the caller decides whether
        a failure is retried (a routed event's customer waits) or kept for review."""
        try:
            info = await self.audience()
        except (Unavailable, NotFound) as error:
            # The audience unreadable or missing is the connector's trouble, not the event's.
            return RecordOutcome(event.event_id, False, str(error), False)
        return await self._deliver_one(info.list_id, event)

    async def _deliver_one(self, list_id: str, item: MemberEvent) -> RecordOutcome:
        try:
            await self.api.call(
                "POST /lists/{id}/members/{hash}/events",
                lambda c: c.lists.create_list_member_event(
                    list_id, subscriber_hash(item.email), item.body()
                ),
            )
        except MailchimpError as error:
            if error.not_found:
                return RecordOutcome(item.event_id, False,
                                     "the person is not a member of the audience", True)
            return RecordOutcome(item.event_id, False, str(error), not error.retryable)
        except CircuitOpenError as error:
            return RecordOutcome(item.event_id, False, _reason(error), False)
        return RecordOutcome.ok(item.event_id)

    # ---- segments -------------------------------------------------------------------------

    async def _platform_segment(self, list_id: str, sync: SegmentSync) -> str:
        known = await self.segments.platform_segment(sync.segment_id)
        if known is not None:
            return known
        existing = await self.api.call(
            "GET /lists/{id}/segments",
            lambda c: c.lists.list_segments(list_id, type="static", count=1000),
        )
        for segment in (existing or {}).get("segments", []):
            if segment.get("name") == sync.segment_name:
                platform_id = str(segment["id"])
                break
        else:
            created = await self.api.call(
                "POST /lists/{id}/segments",
                lambda c: c.lists.create_segment(
                    list_id, {"name": sync.segment_name, "static_segment": []}
                ),
            )
            platform_id = str((created or {})["id"])
        await self.segments.remember(sync.segment_id, platform_id)
        return platform_id

    async def _segment_emails(self, list_id: str, segment_id: str) -> set[str]:
        emails: set[str] = set()
        offset = 0
        while True:
            page = await self.api.call(
                "GET /lists/{id}/segments/{id}/members",
                lambda c, offset=offset: c.lists.get_segment_members_list(  # type: ignore[misc]
                    list_id, segment_id, count=1000, offset=offset
                ),
            ) or {}
            members = page.get("members") or []
            emails.update(str(m["email_address"]).lower() for m in members)
            offset += len(members)
            if not members or offset >= int(page.get("total_items", 0)):
                return emails

    async def sync_segment(self, sync: SegmentSync) -> SegmentSyncResult:
        violations = []
        if not sync.segment_id.strip():
            violations.append(FieldViolation("segment_id", "is required"))
        if not sync.segment_name.strip():
            violations.append(FieldViolation("segment_name", "is required"))
        for name, members in (("members_to_add", sync.to_add),
                              ("members_to_remove", sync.to_remove)):
            for index, (_customer, email) in enumerate(members):
                if not email.strip():
                    violations.append(FieldViolation(f"{name}[{index}].email", "is required"))
        if violations:
            raise InvalidArgument(violations)
        info = await self.audience()
        customer_of = {email.strip().lower(): customer for customer, email in
                       (*sync.to_add, *sync.to_remove)}
        try:
            platform_id = await self._platform_segment(info.list_id, sync)
            to_add = [email.strip() for _, email in sync.to_add]
            to_remove = [email.strip() for _, email in sync.to_remove]
            if sync.full_resync:
                current = await self._segment_emails(info.list_id, platform_id)
                wanted = {email.lower() for email in to_add}
                to_add = [email for email in to_add if email.lower() not in current]
                to_remove = sorted(current - wanted)
        except (MailchimpError, CircuitOpenError) as error:
            message, permanent = _failed_now(error)
            await self.failures.record(
                [NewFailure(OperationKind.SYNC_SEGMENT, sync.segment_id, _sync_record(sync),
                            message, permanent)],
                self._clock(),
            )
            raise Unavailable(f"segment sync recorded for retry: {message}") from None
        added = removed = 0
        failures: list[RecordOutcome] = []
        steps = max(len(to_add), len(to_remove))

        async def step(start: int) -> tuple[int, int, list[RecordOutcome]]:
            add = to_add[start : start + MAX_SEGMENT_DELTA]
            remove = to_remove[start : start + MAX_SEGMENT_DELTA]
            body = {"members_to_add": add, "members_to_remove": remove}
            try:
                reply = await self.api.call(
                    "POST /lists/{id}/segments/{id}",
                    # The SDK takes the body first here, unlike every other method.
                    lambda c: c.lists.batch_segment_members(body, info.list_id, platform_id),
                ) or {}
            except (MailchimpError, CircuitOpenError) as error:
                message, permanent = _failed_now(error)
                return 0, 0, [
                    RecordOutcome(customer_of.get(e.lower(), fingerprint(e.lower())), False,
                                  message, permanent)
                    for e in (*add, *remove)
                ]
            refused = [
                RecordOutcome(customer_of.get(e.lower(), fingerprint(e.lower())), False,
                              "not a member of the audience", True)
                for error in reply.get("errors") or []
                for e in error.get("email_addresses") or []
            ]
            return int(reply.get("total_added", 0)), int(reply.get("total_removed", 0)), refused

        for step_added, step_removed, step_failures in await asyncio.gather(
            *(step(start) for start in range(0, steps, MAX_SEGMENT_DELTA))
        ):
            added += step_added
            removed += step_removed
            failures.extend(step_failures)
        retryable = [f for f in failures if not f.permanent]
        if retryable:
            keys = {f.key for f in retryable}
            await self.failures.record(
                [NewFailure(
                    OperationKind.SYNC_SEGMENT,
                    sync.segment_id,
                    _sync_record(SegmentSync(
                        sync.segment_id, sync.segment_name,
                        tuple(m for m in sync.to_add if m[0] in keys),
                        tuple(m for m in sync.to_remove if m[0] in keys),
                    )),
                    retryable[0].error,
                    False,
                )],
                self._clock(),
            )
        return SegmentSyncResult(platform_id, added, removed, tuple(failures))

    # ---- fetch and delete -----------------------------------------------------------------

    async def fetch_customer(self, email: str) -> dict[str, Any] | None:
        problem = check_email(email, "email")
        if problem is not None:
            raise InvalidArgument([problem])
        info = await self.audience()
        try:
            member = await self.api.call(
                "GET /lists/{id}/members/{hash}",
                lambda c: c.lists.get_list_member(info.list_id, subscriber_hash(email)),
            )
        except MailchimpError as error:
            if error.not_found:
                return None
            raise Unavailable(f"cannot fetch the member: {error}") from None
        except CircuitOpenError as error:
            raise Unavailable(_reason(error)) from None
        return dict(member or {})

    async def delete_customer(self, customer_id: str, hashes: Sequence[str]) -> int:
        """Permanent deletion (GDPR); a hash Mailchimp does not know counts as done."""
        violations = [
            FieldViolation(f"email_md5_hashes[{i}]", "is not a lower-case MD5 hex digest")
            for i, h in enumerate(hashes) if not HASH.match(h)
        ]
        if not hashes:
            violations.append(FieldViolation("email_md5_hashes", "is required"))
        if violations:
            raise InvalidArgument(violations)
        info = await self.audience()
        deleted = 0
        remaining: list[str] = []
        last_error = ""
        for member_hash in dict.fromkeys(hashes):
            try:
                await self.api.call(
                    "POST /lists/{id}/members/{hash}/actions/delete-permanent",
                    lambda c, h=member_hash: c.lists.delete_list_member_permanent(  # type: ignore[misc]
                        info.list_id, h
                    ),
                )
                deleted += 1
            except MailchimpError as error:
                if error.not_found:
                    continue
                remaining.append(member_hash)
                last_error = str(error)
            except CircuitOpenError as error:
                remaining.append(member_hash)
                last_error = _reason(error)
        if remaining:
            # An erasure must not be lost: kept and retried until Mailchimp confirms it.
            await self.failures.record(
                [NewFailure(OperationKind.DELETE_CUSTOMER, customer_id,
                            {"hashes": remaining}, last_error, False)],
                self._clock(),
            )
            raise Unavailable(
                f"{len(remaining)} of {len(hashes)} deletions failed and were recorded for "
                f"retry: {last_error}"
            )
        return deleted

    # ---- health ---------------------------------------------------------------------------

    async def health(self) -> Health:
        started = time.perf_counter()
        state = self.api.breaker_state.value
        try:
            await self.api.call("GET /ping", lambda c: c.ping.get(), policy=HEALTH_POLICY)
        except (MailchimpError, CircuitOpenError) as error:
            return Health(HealthStatus.DOWN, (time.perf_counter() - started) * 1000,
                          _reason(error), self._clock(), self.api.breaker_state.value)
        latency = (time.perf_counter() - started) * 1000
        status = HealthStatus.HEALTHY
        message = "Everything's Chimpy!"
        if latency > SLOW_PING_MS or state == "half_open":
            status, message = HealthStatus.DEGRADED, f"ping took {latency:.0f} ms"
        return Health(status, latency, message, self._clock(), self.api.breaker_state.value)

    # ---- failed operations ----------------------------------------------------------------

    async def list_failed(
        self, *, limit: int, include_permanent: bool
    ) -> tuple[list[FailedOperation], int]:
        return await self.failures.page(limit=limit, include_permanent=include_permanent)

    async def retry_failed(self, ids: Sequence[str]) -> RetryResult:
        operations = await self.failures.select(ids)
        succeeded = 0
        still: list[FailedOperation] = []
        for operation in operations:
            try:
                await self._run_again(operation)
            except (MailchimpError, CircuitOpenError, Unavailable) as error:
                message, permanent = (
                    _failed_now(error) if not isinstance(error, Unavailable)
                    else (str(error), False)
                )
                await self.failures.record(
                    [NewFailure(operation.kind, operation.subject_id, operation.payload,
                                message, permanent)],
                    self._clock(),
                )
                still.append(operation)
                continue
            await self.failures.resolve(operation.id)
            succeeded += 1
        return RetryResult(len(operations), succeeded, tuple(still))

    async def _run_again(self, operation: FailedOperation) -> None:
        payload = operation.payload
        if operation.kind is OperationKind.PUSH_PROFILE:
            await self.upsert_one(MemberUpsert.from_record(payload))
        elif operation.kind is OperationKind.DELIVER_EVENT:
            occurred = payload.get("occurred_at")
            event = MemberEvent(operation.subject_id, payload["email"], payload["name"],
                                dict(payload.get("properties") or {}),
                                datetime.fromisoformat(occurred) if occurred else None)
            info = await self.audience()
            await self.api.call(
                "POST /lists/{id}/members/{hash}/events",
                lambda c: c.lists.create_list_member_event(
                    info.list_id, subscriber_hash(event.email), event.body()),
            )
        elif operation.kind is OperationKind.DELETE_CUSTOMER:
            await self.delete_customer(operation.subject_id, list(payload["hashes"]))
        elif operation.kind is OperationKind.SYNC_SEGMENT:
            result = await self.sync_segment(SegmentSync(
                payload["segment_id"], payload["segment_name"],
                tuple(tuple(m) for m in payload["to_add"]),
                tuple(tuple(m) for m in payload["to_remove"]),
            ))
            if any(not f.permanent for f in result.failures):
                raise Unavailable("segment members still failing")


def _sync_record(sync: SegmentSync) -> dict[str, Any]:
    return {
        "segment_id": sync.segment_id,
        "segment_name": sync.segment_name,
        "to_add": [list(m) for m in sync.to_add],
        "to_remove": [list(m) for m in sync.to_remove],
    }


def _download_results(url: str) -> list[dict[str, Any]]:
    """The operations' results from a finished batch's `response_body_url` (a .tar.gz)."""
    reply = requests.get(url, timeout=60)
    reply.raise_for_status()
    results: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(reply.content), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith(".json"):
                handle = archive.extractfile(member)
                if handle is not None:
                    results.extend(json.loads(handle.read()))
    return results

