"""When a segment's membership is synced to its platforms.

Hourly runs at the top of every hour and daily at midnight (UTC), the same instants on every
replica, so a sync is never done twice because two processes computed different times.
Realtime segments have no schedule: their deltas go out as they happen.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter

from cdp_errors import FieldViolation
from cdp_segmentation.domain.model import Schedule, ScheduleKind

HOURLY = "0 * * * *"
DAILY = "0 0 * * *"


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a five-field cron expression, or None."""
    if len(expression.split()) != 5:
        return "needs five fields (minute hour day-of-month month day-of-week), e.g. 30 6 * * 1"
    try:
        croniter(expression, datetime(2026, 1, 1, tzinfo=UTC)).get_next(datetime)
    # croniter's errors are ValueErrors, its range errors TypeErrors.
    except (ValueError, TypeError, KeyError) as error:
        return f"is not a valid cron expression: {error}"
    return None


def schedule_violations(
    schedule: Schedule | None, kind_text: str, path: str
) -> list[FieldViolation]:
    """Problems with a schedule as given (`kind_text` is what the caller sent)."""
    if schedule is None:
        if not kind_text:
            return [FieldViolation(f"{path}.kind", "is required (realtime, hourly, daily, cron)")]
        return [FieldViolation(f"{path}.kind", f"unknown schedule kind {kind_text!r}")]
    violations = []
    if schedule.kind is ScheduleKind.CRON:
        problem = cron_problem(schedule.cron) if schedule.cron.strip() else "is required for cron"
        if problem:
            violations.append(FieldViolation(f"{path}.cron", problem))
    elif schedule.cron:
        violations.append(FieldViolation(f"{path}.cron", "is only used with kind cron"))
    return violations


def expression_of(schedule: Schedule) -> str | None:
    if schedule.kind is ScheduleKind.HOURLY:
        return HOURLY
    if schedule.kind is ScheduleKind.DAILY:
        return DAILY
    if schedule.kind is ScheduleKind.CRON:
        return schedule.cron
    return None


def next_run(schedule: Schedule, after: datetime) -> datetime | None:
    """The first scheduled instant strictly after `after`; None for realtime."""
    expression = expression_of(schedule)
    if expression is None:
        return None
    following: datetime = croniter(expression, after.astimezone(UTC)).get_next(datetime)
    return following.astimezone(UTC)
