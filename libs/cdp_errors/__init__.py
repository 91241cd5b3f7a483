"""Typed domain errors shared by every service.

Domain code raises these; the gRPC runtime maps each to one status code in one place
(`cdp_grpc.errors`). They import nothing from gRPC, SQL or NATS, so `domain/` packages can
use them. Messages say what was wrong and with which field, and never carry personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path in the request and what is wrong with its value."""

    field: str
    description: str

    def under(self, prefix: str) -> FieldViolation:
        """The same violation with its path nested under `prefix` (e.g. `items[3]`)."""
        if not prefix:
            return self
        return FieldViolation(f"{prefix}.{self.field}" if self.field else prefix, self.description)


class DomainError(Exception):
    """Base class of every error the suite reports to its callers on purpose."""


class InvalidArgument(DomainError):
    """The request is malformed; `violations` names each bad field."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        if not violations:
            raise ValueError("InvalidArgument needs at least one violation")
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))

    @classmethod
    def single(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])

    def under(self, prefix: str) -> InvalidArgument:
        return InvalidArgument([v.under(prefix) for v in self.violations])


class NotFound(DomainError):
    """A named thing does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class AlreadyExists(DomainError):
    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} already exists")


class FailedPrecondition(DomainError):
    """The request is well-formed but the system is not in a state that allows it."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        self.reason = reason
        super().__init__(message)


class Unavailable(DomainError):
    """A dependency (database, bus, platform) cannot be reached; retrying may help."""


class PermissionDenied(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


def collect_violations(checks: Iterable[FieldViolation | None]) -> list[FieldViolation]:
    """The violations among `checks`, dropping the `None`s of checks that passed."""
    return [c for c in checks if c is not None]
