"""What every handler needs to know about the database's segments and declared fields.

Held in memory and reloaded whenever a catalog version moves (any replica's create, update
or delete of a segment, or a change of declared fields bumps it). The versions are read
under the membership lock, so a transaction evaluates with the segments that are current.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdp_segmentation.adapters.catalog import FieldCatalog, load_catalog
from cdp_segmentation.adapters.memberships import (
    CatalogVersions,
    EvaluationPlan,
    build_evaluation_plan,
    lock_memberships,
)
from cdp_segmentation.adapters.unit_of_work import SqlSegmentationUnitOfWork
from cdp_segmentation.domain.model import AttributeSchema, Segment


@dataclass(frozen=True)
class Catalog:
    versions: CatalogVersions
    fields: FieldCatalog
    segments: tuple[Segment, ...]
    plan: EvaluationPlan

    def segment(self, segment_id: str) -> Segment | None:
        for segment in self.segments:
            if segment.id == segment_id:
                return segment
        return None

    @property
    def realtime_ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.segments if s.realtime)


class CatalogCache:
    def __init__(self) -> None:
        self._catalog: Catalog | None = None

    async def locked(self, uow: SqlSegmentationUnitOfWork, *, exclusive: bool) -> Catalog:
        """Takes the membership lock for `uow`'s transaction; the catalog as of then."""
        versions = await lock_memberships(uow.connection, exclusive=exclusive)
        cached = self._catalog
        if cached is not None and cached.versions == versions:
            return cached
        fields = await load_catalog(uow.connection)
        segments = tuple(await uow.segments.all())
        plan = build_evaluation_plan(segments, dict(fields.columns))
        catalog = Catalog(versions, fields, segments, plan)
        self._catalog = catalog
        return catalog

    async def schema(self, uow: SqlSegmentationUnitOfWork) -> AttributeSchema:
        """The fields criteria can name: declared, then learned from profiles."""
        fields = await load_catalog(uow.connection)
        learned = await uow.read_model.learned_fields()
        return AttributeSchema(declared=dict(fields.specs), learned=learned)
