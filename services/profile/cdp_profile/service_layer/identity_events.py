"""Following the identity service: merges, unmerges and erasures.

Each handler runs in one transaction with its inbox claim, so a redelivered event (the
consumer is at-least-once) changes nothing the second time, and a crash before commit
leaves the event unclaimed for the next delivery. These are rare, so rebuilding the
profiles involved from history is the right cost here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from cdp_profile.domain.events import ProfileDeleted, ProfileUpdated
from cdp_profile.domain.model import ProfileHead
from cdp_profile.domain.profile import ProfileWork
from cdp_profile.domain.strategies import StrategyBook
from cdp_profile.service_layer.ingestion import utc_now
from cdp_profile.service_layer.ports import ProfileUnitOfWork

logger = logging.getLogger(__name__)


def _has_profile(head: ProfileHead) -> bool:
    """Whether consumers know a profile for this customer (a merged one was deleted then)."""
    return head.version > 0 and not head.forgotten and head.merged_into is None


class IdentityEventHandler:
    def __init__(
        self,
        uow_factory: Callable[[], ProfileUnitOfWork],
        *,
        book: StrategyBook,
        consumer: str,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow_factory = uow_factory
        self._book = book
        self._consumer = consumer
        self._clock = clock

    async def _rebuild(
        self, uow: ProfileUnitOfWork, heads: Iterable[ProfileHead], now: datetime
    ) -> list[ProfileWork]:
        works = []
        for head in heads:
            work = ProfileWork(head, self._book, {})
            changes = work.rebuild(await uow.profiles.history(head.customer_id))
            if changes:
                uow.publish_event(
                    ProfileUpdated(head.customer_id, work.version, changes, work.document, now)
                )
            works.append(work)
        return works

    async def customers_merged(
        self, message_id: str, *, survivor: str, merged: str, merge_id: str = ""
    ) -> None:
        """`merged` now resolves to `survivor`: its fragments move there, its profile folds in."""
        now = self._clock()
        async with self._uow_factory() as uow:
            if not await uow.claim_message(self._consumer, message_id):
                return
            if merge_id and not await uow.profiles.record_merge(merge_id, survivor, merged, now):
                logger.info(
                    "skipped a merge that was already undone",
                    extra={"customer_id": merged, "merge_id": merge_id},
                )
                await uow.commit()
                return
            # The survivor may itself have been merged on since (events of a chain of merges).
            survivor = (await uow.profiles.survivors([survivor])).get(survivor, survivor)
            if survivor == merged:
                logger.warning(
                    "ignored a merge of a customer into itself",
                    extra={"customer_id": merged, "message_id": message_id},
                )
                await uow.commit()
                return
            heads = await uow.profiles.lock_profiles({survivor, merged}, now)
            loser, winner = heads[merged], heads[survivor]
            if loser.forgotten or winner.forgotten or loser.merged_into == survivor:
                await uow.commit()
                return
            announce = _has_profile(loser)
            moved = await uow.profiles.move_fragments(merged, survivor)
            loser_work = ProfileWork(loser, self._book, {})
            loser_work.clear()
            loser.merged_into = survivor
            loser_work.changed = True
            (winner_work,) = await self._rebuild(uow, [winner], now)
            await uow.profiles.save([loser_work, winner_work], now)
            if announce:
                uow.publish_event(ProfileDeleted(merged, survivor, now))
            await uow.commit()
        logger.info(
            "merged a profile into its survivor",
            extra={"customer_id": merged, "survivor_id": survivor, "fragments_moved": moved},
        )

    async def customers_unmerged(
        self, message_id: str, *, survivor: str, restored: str, merge_id: str = ""
    ) -> None:
        """`restored` exists again: it takes back the fragments ingested for it (and for the
        customers merged into it), and both profiles are rebuilt."""
        now = self._clock()
        async with self._uow_factory() as uow:
            if not await uow.claim_message(self._consumer, message_id):
                return
            if merge_id:
                await uow.profiles.record_unmerge(merge_id, survivor, restored, now)
            family = await uow.profiles.family(restored)
            owners = await uow.profiles.owners_of_fragments_for(family) - family
            heads = await uow.profiles.lock_profiles(owners | {restored}, now)
            restored_head = heads[restored]
            if restored_head.forgotten:
                await uow.commit()
                return
            restored_head.merged_into = None
            reclaimed = await uow.profiles.reclaim_fragments(restored, family)
            works = await self._rebuild(uow, [heads[owner] for owner in sorted(owners)], now)
            (restored_work,) = await self._rebuild(uow, [restored_head], now)
            restored_work.changed = True
            await uow.profiles.save([*works, restored_work], now)
            await uow.commit()
        logger.info(
            "split a merged profile back out",
            extra={"customer_id": restored, "survivor_id": survivor, "fragments_moved": reclaimed},
        )

    async def customer_forgotten(
        self, message_id: str, *, customer_id: str, merged_customer_ids: Iterable[str]
    ) -> None:
        """Erases everything about the customer and those merged into it; profiles that held
        fragments ingested for them are rebuilt without them."""
        now = self._clock()
        async with self._uow_factory() as uow:
            if not await uow.claim_message(self._consumer, message_id):
                return
            erased: set[str] = set()
            for candidate in {customer_id, *merged_customer_ids}:
                erased |= await uow.profiles.family(candidate)
            owners = await uow.profiles.owners_of_fragments_for(erased) - erased
            heads = await uow.profiles.lock_profiles(erased | owners, now)
            announced = sorted(c for c in erased if _has_profile(heads[c]))
            deleted = await uow.profiles.forget(erased, now)
            works = await self._rebuild(uow, [heads[owner] for owner in sorted(owners)], now)
            await uow.profiles.save(works, now)
            for customer in announced:
                uow.publish_event(ProfileDeleted(customer, "", now))
            await uow.commit()
        logger.info(
            "forgot a customer",
            extra={"customer_id": customer_id, "customers": len(erased), "fragments": deleted},
        )
