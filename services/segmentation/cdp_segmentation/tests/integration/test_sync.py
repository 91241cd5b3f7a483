"""Syncing membership deltas to a connector on real gRPC: chunks, failures, full mirrors."""

from __future__ import annotations

import asyncio
from collections import Counter

from cdp.segmentation.v1 import segmentation_pb2 as pb
from cdp_segmentation.adapters.sync_store import SYNC_LOCK, sync_lock_key
from cdp_testing import wait_until

from .conftest import RunningSegmentation, customer, emails
from .test_segments import condition, definition, email_of


async def members_with_value(
    segmentation: RunningSegmentation, count: int, value: float = 900
) -> list[str]:
    ids = [customer() for _ in range(count)]
    for id_ in ids:
        await segmentation.publish(
            id_, {"customer": {"lifetime_value": value}, "user": {"email": email_of(id_)}}
        )
    return ids


async def hourly_segment(segmentation: RunningSegmentation) -> pb.Segment:
    return await segmentation.create(
        definition(condition("customer.lifetime_value", "greaterThan", 500), kind="HOURLY")
    )


async def sync(segmentation: RunningSegmentation, segment_id: str, *,
               full: bool = False) -> pb.SyncSegmentResponse:
    reply: pb.SyncSegmentResponse = await segmentation.stub.SyncSegment(
        pb.SyncSegmentRequest(segment_id=segment_id, full_resync=full)
    )
    return reply


async def test_the_delta_goes_out_in_chunks_of_at_most_500_and_only_the_change_after(
    segmentation: RunningSegmentation,
) -> None:
    ids = await members_with_value(segmentation, 1200)
    await segmentation.handled(1200)
    segment = await hourly_segment(segmentation)
    reply = await sync(segmentation, segment.id)
    (result,) = reply.results
    assert (result.platform, result.success, result.records_synced) == ("mailchimp", True, 1200)
    calls = segmentation.connector.calls
    assert [len(c.add) for c in calls] == [500, 500, 200]
    assert all(len(c.remove) == 0 and not c.full_resync for c in calls)
    assert segmentation.connector.segments[segment.id] == {email_of(i) for i in ids}
    assert await segmentation.pending(segment.id) == 0

    leaving = ids[:300]
    for id_ in leaving:
        await segmentation.publish(id_, {"customer": {"lifetime_value": 10},
                                         "user": {"email": email_of(id_)}})
    await segmentation.handled(1500)
    await sync(segmentation, segment.id)
    later = segmentation.connector.calls[3:]
    assert [(len(c.add), len(c.remove)) for c in later] == [(0, 300)]
    assert segmentation.connector.segments[segment.id] == {email_of(i) for i in ids[300:]}
    got = await segmentation.stub.GetSegment(pb.GetSegmentRequest(segment_id=segment.id))
    (status,) = got.segment.sync_status
    assert (status.members_on_platform, status.pending_additions, status.pending_removals) == (
        900, 0, 0
    )
    assert status.HasField("last_success_at") and status.last_error == ""


async def test_a_failed_sync_resumes_the_same_delta_skipping_and_repeating_nothing(
    segmentation: RunningSegmentation,
) -> None:
    ids = await members_with_value(segmentation, 1200)
    await segmentation.handled(1200)
    segment = await hourly_segment(segmentation)
    segmentation.connector.fail_calls = {2}

    (failed,) = (await sync(segmentation, segment.id)).results
    assert not failed.success and "INTERNAL" in failed.error and not failed.permanent
    assert failed.records_synced == 500
    assert await segmentation.pending(segment.id) == 700
    got = await segmentation.stub.GetSegment(pb.GetSegmentRequest(segment_id=segment.id))
    assert got.segment.sync_status[0].consecutive_failures == 1
    assert got.segment.sync_status[0].last_error

    # A change while the sync is failing joins the same delta.
    extra = await members_with_value(segmentation, 1)
    await segmentation.handled(1201)
    (resumed,) = (await sync(segmentation, segment.id)).results
    assert resumed.success and resumed.records_synced == 701

    delivered = Counter(emails(segmentation.connector.successful(), "add"))
    assert set(delivered) == {email_of(i) for i in [*ids, *extra]}
    assert max(delivered.values()) == 1
    # The failed call's members are exactly the ones the next call sent first.
    failed_call, next_call = segmentation.connector.calls[1], segmentation.connector.calls[2]
    assert failed_call.add == next_call.add[: len(failed_call.add)]
    got = await segmentation.stub.GetSegment(pb.GetSegmentRequest(segment_id=segment.id))
    assert got.segment.sync_status[0].consecutive_failures == 0


async def test_members_the_platform_refuses_for_good_leave_the_delta_counted_as_failed(
    segmentation: RunningSegmentation,
) -> None:
    ids = await members_with_value(segmentation, 3)
    await segmentation.handled(3)
    segment = await hourly_segment(segmentation)
    segmentation.connector.refused = {email_of(ids[0])}
    (result,) = (await sync(segmentation, segment.id)).results
    assert (result.success, result.records_synced, result.records_failed) == (True, 2, 1)
    assert await segmentation.pending(segment.id) == 0


async def test_a_full_resync_makes_the_platform_mirror_the_membership_exactly(
    segmentation: RunningSegmentation,
) -> None:
    ids = await members_with_value(segmentation, 10)
    await segmentation.handled(10)
    segment = await hourly_segment(segmentation)
    await sync(segmentation, segment.id)
    held = segmentation.connector.segments[segment.id]
    # Someone edited the platform's segment by hand: one member gone, a stranger added.
    held.discard(email_of(ids[0]))
    held.add("stranger@example.com")
    leaving = ids[1]
    await segmentation.publish(leaving, {"customer": {"lifetime_value": 1},
                                         "user": {"email": email_of(leaving)}})
    await segmentation.handled(11)

    (result,) = (await sync(segmentation, segment.id, full=True)).results
    assert result.success
    assert segmentation.connector.calls[-1].full_resync
    assert segmentation.connector.segments[segment.id] == {email_of(i) for i in ids[2:]} | {
        email_of(ids[0])
    }
    assert await segmentation.pending(segment.id) == 0
    await sync(segmentation, segment.id)
    assert len(segmentation.connector.calls) == 2


async def test_scheduled_syncs_run_when_due_and_realtime_deltas_go_out_at_the_next_tick(
    segmentation: RunningSegmentation,
) -> None:
    ids = await members_with_value(segmentation, 2)
    await segmentation.handled(2)
    hourly = await hourly_segment(segmentation)
    realtime = await segmentation.create(definition(
        condition("customer.lifetime_value", "greaterThan", 100), name="realtime"
    ))
    results = await segmentation.app.syncer.run_due()
    assert [r.platform for r in results] == ["mailchimp"]
    assert segmentation.connector.segments[realtime.id] == {email_of(i) for i in ids}
    assert hourly.id not in segmentation.connector.segments

    segmentation.clock.advance(hours=1)
    results = await segmentation.app.syncer.run_due()
    assert segmentation.connector.segments[hourly.id] == {email_of(i) for i in ids}
    assert await segmentation.app.syncer.run_due() == []


async def test_sync_segment_waits_for_a_sync_already_running_while_the_scheduler_skips_its_turn(
    segmentation: RunningSegmentation,
) -> None:
    ids = await members_with_value(segmentation, 3)
    await segmentation.handled(3)
    realtime = await segmentation.create(definition(
        condition("customer.lifetime_value", "greaterThan", 100), name="realtime"
    ))
    # Another replica's sync of the same (segment, platform), as the database sees it.
    lock = (SYNC_LOCK, sync_lock_key(realtime.id, "mailchimp"))
    await segmentation.database.execute("SELECT pg_advisory_lock($1, $2)", *lock)

    (skipped,) = await segmentation.app.syncer.run_due()
    assert not skipped.success and "running" in skipped.error
    (gave_up,) = (await segmentation.stub.SyncSegment(
        pb.SyncSegmentRequest(segment_id=realtime.id), timeout=1.0
    )).results
    assert not gave_up.success and "running" in gave_up.error

    waiting = asyncio.create_task(sync(segmentation, realtime.id))

    async def blocked() -> bool:
        count: int = await segmentation.database.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = $1 AND objid = $2 AND objsubid = 2",
            *lock,
        )
        return count == 1

    await wait_until(blocked, timeout=10, message="SyncSegment waiting on the sync lock")
    assert segmentation.connector.calls == []
    await segmentation.database.execute("SELECT pg_advisory_unlock($1, $2)", *lock)
    (result,) = (await waiting).results
    assert (result.success, result.records_synced) == (True, 3)
    assert segmentation.connector.segments[realtime.id] == {email_of(i) for i in ids}
