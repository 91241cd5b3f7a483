"""CloudEvents 1.0 in NATS binary mode: attributes in `ce-` headers, the data as the body.

`Nats-Msg-Id` carries the event id so that JetStream drops a re-sent duplicate, and
`traceparent` / `tracestate` carry the W3C trace context across the bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

SPEC_VERSION = "1.0"
PROTOBUF = "application/protobuf"
JSON = "application/json"
MSG_ID_HEADER = "Nats-Msg-Id"


@dataclass(frozen=True)
class CloudEvent:
    id: str
    type: str
    source: str
    data: bytes
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    content_type: str = PROTOBUF
    # The protobuf message's full name, e.g. "cdp.identity.v1.CustomersMerged".
    data_schema: str = ""
    # What the event is about, e.g. a customer id; never personal data.
    subject: str = ""

    def headers(self) -> dict[str, str]:
        headers = {
            "ce-specversion": SPEC_VERSION,
            "ce-id": self.id,
            "ce-type": self.type,
            "ce-source": self.source,
            "ce-time": self.time.isoformat(),
            "content-type": self.content_type,
            MSG_ID_HEADER: self.id,
        }
        if self.data_schema:
            headers["ce-dataschema"] = self.data_schema
        if self.subject:
            headers["ce-subject"] = self.subject
        return headers

    @classmethod
    def from_message(cls, headers: dict[str, str] | None, data: bytes) -> CloudEvent:
        """Reads a binary-mode message; raises ValueError when a required attribute is missing."""
        headers = headers or {}
        missing = [name for name in ("ce-id", "ce-type", "ce-source") if not headers.get(name)]
        if missing:
            raise ValueError(f"not a CloudEvent: missing header(s) {', '.join(missing)}")
        raw_time = headers.get("ce-time")
        return cls(
            id=headers["ce-id"],
            type=headers["ce-type"],
            source=headers["ce-source"],
            data=data,
            time=datetime.fromisoformat(raw_time) if raw_time else datetime.now(UTC),
            content_type=headers.get("content-type", PROTOBUF),
            data_schema=headers.get("ce-dataschema", ""),
            subject=headers.get("ce-subject", ""),
        )
