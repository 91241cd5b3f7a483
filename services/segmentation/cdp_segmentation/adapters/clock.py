"""The service's clock: UTC wall time, optionally shifted by a number of seconds read from a
file, so that a rehearsal (or an end-to-end test) can move the service into the future and
watch time-based segments change without waiting."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path


def utc_now() -> datetime:
    return datetime.now(UTC)


class ShiftedClock:
    """`utc_now()` plus the seconds in `path` (re-read whenever the file changes; a missing
    or unreadable file means no shift)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._shift = timedelta()

    def _read(self) -> timedelta:
        try:
            status = os.stat(self._path)
        except OSError:
            self._stamp = None
            return timedelta()
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            try:
                self._shift = timedelta(seconds=float(self._path.read_text().strip() or "0"))
            except (OSError, ValueError):
                self._shift = timedelta()
            self._stamp = stamp
        return self._shift

    def __call__(self) -> datetime:
        return utc_now() + self._read()
