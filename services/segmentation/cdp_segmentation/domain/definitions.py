"""Checking a segment definition as a caller wrote it: name, criteria, platforms, schedule."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from cdp_errors import FieldViolation, InvalidArgument
from cdp_segmentation.domain.criteria import DEFAULT_LIMITS, CriteriaLimits, check_criteria
from cdp_segmentation.domain.model import (
    AttributeSchema,
    Group,
    RawGroup,
    Schedule,
    ScheduleKind,
    SegmentDefinition,
)
from cdp_segmentation.domain.schedules import schedule_violations

MAX_NAME = 100
MAX_DESCRIPTION = 2000
MAX_PLATFORMS = 20


@dataclass(frozen=True)
class SegmentInput:
    """A definition as the request carries it; `schedule_kind` is "" when unset."""

    name: str
    description: str
    criteria: RawGroup | None
    platforms: tuple[str, ...]
    schedule_kind: str
    cron: str = ""


def check_definition(
    given: SegmentInput,
    schema: AttributeSchema,
    *,
    platforms: Collection[str],
    path: str = "segment",
    limits: CriteriaLimits = DEFAULT_LIMITS,
) -> SegmentDefinition:
    """The checked definition; InvalidArgument naming every bad part otherwise."""
    violations: list[FieldViolation] = []
    name = given.name.strip()
    if not name:
        violations.append(FieldViolation(f"{path}.name", "is required"))
    elif len(name) > MAX_NAME:
        violations.append(
            FieldViolation(f"{path}.name", f"is {len(name)} characters; the limit is {MAX_NAME}")
        )
    if len(given.description) > MAX_DESCRIPTION:
        violations.append(
            FieldViolation(
                f"{path}.description",
                f"is {len(given.description)} characters; the limit is {MAX_DESCRIPTION}",
            )
        )
    known = frozenset(platforms)
    if len(given.platforms) > MAX_PLATFORMS:
        violations.append(
            FieldViolation(f"{path}.sync_platforms", f"has more than {MAX_PLATFORMS} platforms")
        )
    seen: set[str] = set()
    for index, platform in enumerate(given.platforms):
        if platform not in known:
            violations.append(
                FieldViolation(
                    f"{path}.sync_platforms[{index}]",
                    f"unknown platform {platform!r} (known: {', '.join(sorted(known))})",
                )
            )
        elif platform in seen:
            violations.append(
                FieldViolation(f"{path}.sync_platforms[{index}]", f"{platform} is listed twice")
            )
        seen.add(platform)
    schedule = None
    try:
        schedule = Schedule(ScheduleKind(given.schedule_kind), given.cron.strip())
    except ValueError:
        pass
    violations.extend(schedule_violations(schedule, given.schedule_kind, f"{path}.schedule"))
    criteria: Group | None = None
    try:
        criteria = check_criteria(
            given.criteria, schema, platforms=known, limits=limits, path=f"{path}.criteria"
        )
    except InvalidArgument as error:
        violations.extend(error.violations)
    if violations:
        raise InvalidArgument(violations)
    assert criteria is not None and schedule is not None
    return SegmentDefinition(
        name=name,
        description=given.description,
        criteria=criteria,
        platforms=tuple(given.platforms),
        schedule=schedule,
    )
