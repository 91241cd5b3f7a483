"""Domain events identity announces on the bus (past tense)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CustomerCreated:
    customer_id: str
    identity_types: tuple[str, ...]
    source_platform: str
    occurred_at: datetime


@dataclass(frozen=True)
class CustomersMerged:
    merge_id: str
    survivor_customer_id: str
    merged_customer_id: str
    matched_on: tuple[str, ...]
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class CustomersUnmerged:
    merge_id: str
    survivor_customer_id: str
    restored_customer_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class CustomerForgotten:
    customer_id: str
    merged_customer_ids: tuple[str, ...]
    # Lower-case MD5 of each forgotten email: what platforms keyed by email (Mailchimp's
    # subscriber hash) need to delete the person, without the email itself.
    email_md5_hashes: tuple[str, ...]
    occurred_at: datetime


IdentityEvent = CustomerCreated | CustomersMerged | CustomersUnmerged | CustomerForgotten
