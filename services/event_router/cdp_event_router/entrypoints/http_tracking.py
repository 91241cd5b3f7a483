"""The Segment-compatible HTTP tracking API: /v1/track, identify, page, screen, group, alias
and batch, so that Segment's and RudderStack's SDKs send to the suite unchanged.

Authentication is the Segment way: HTTP Basic with the write key as user name and an empty
password (or `writeKey` in the body). Each write key belongs to one source. Bodies may be
gzip-compressed. A request is answered 200 once every valid message is stored; invalid
messages are listed in the reply (a request with nothing valid is 400, which SDKs do not
retry); 503 when the router cannot store anything (the SDKs retry).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cdp_errors import Unavailable
from cdp_event_router.domain.model import IncomingEvent, PublishStatus
from cdp_event_router.domain.segment_spec import SPEC_TYPES, from_segment
from cdp_event_router.service_layer.ingest import EventIngest

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 500 * 1024


_CODES = {400: "invalid_request", 401: "unauthorized", 413: "payload_too_large",
          503: "unavailable"}


def _error(status: int, message: str, **extra: Any) -> web.Response:
    # `code` and `message` are what Segment's and RudderStack's SDKs read from an error.
    body = {"success": False, "code": _CODES.get(status, "error"), "message": message, **extra}
    return web.json_response(body, status=status)


class TrackingApi:
    def __init__(self, ingest: EventIngest, write_keys: Mapping[str, str], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # write key -> source name; compared in constant time.
        self._write_keys = dict(write_keys)
        self._ingest = ingest
        self._clock = clock

    def app(self) -> web.Application:
        application = web.Application(client_max_size=MAX_BODY_BYTES * 4)
        for kind in (*SPEC_TYPES, "batch"):
            application.router.add_post(f"/v1/{kind}", self._handler(kind))
        application.router.add_get("/health", self._health)
        return application

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    def _source_for(self, request: web.Request, body: Mapping[str, Any] | None) -> str | None:
        presented = ""
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                presented = base64.b64decode(header[6:]).decode().split(":", 1)[0]
            except (binascii.Error, UnicodeDecodeError):
                return None
        elif body is not None and isinstance(body.get("writeKey"), str):
            presented = body["writeKey"]
        for key, source in self._write_keys.items():
            if presented and hmac.compare_digest(presented.encode(), key.encode()):
                return source
        return None

    def _handler(self, kind: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.Response:
            raw = await request.read()
            # aiohttp already inflates gzip request bodies; a body still starting with gzip's
            # magic bytes was compressed twice or is malformed.
            if raw[:2] == b"\x1f\x8b":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError):
                    return _error(400, "body is not valid gzip")
            if len(raw) > MAX_BODY_BYTES:
                return _error(413, f"body of {len(raw)} bytes exceeds the limit of "
                                   f"{MAX_BODY_BYTES} bytes")
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return _error(400, "body is not valid JSON")
            if not isinstance(body, dict):
                return _error(400, "body must be a JSON object")
            source = self._source_for(request, body)
            if source is None:
                return _error(401, "missing or unknown write key")
            return await self._ingest_messages(kind, body, source)

        return handle

    async def _ingest_messages(self, kind: str, body: dict[str, Any],
                               source: str) -> web.Response:
        now = self._clock()
        if kind == "batch":
            messages = body.get("batch")
            if not isinstance(messages, list):
                return _error(400, "batch must be a list of messages",
                              violations=[{"field": "batch", "description": "is required"}])
            shared_context = body.get("context") if isinstance(body.get("context"), dict) else {}
            paths = [f"batch[{i}]" for i in range(len(messages))]
        else:
            messages = [{**body, "type": kind}]
            shared_context = {}
            paths = [""]
        events: list[IncomingEvent] = []
        event_paths: list[str] = []
        event_index: list[int] = []
        rejected: list[dict[str, Any]] = []
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                rejected.append({"index": index, "violations": [
                    {"field": paths[index] or "body", "description": "must be an object"}]})
                continue
            if shared_context:
                message = {**message, "context": {**shared_context,
                                                  **(message.get("context") or {})}}
            event, problems = from_segment(message, source=source, received_at=now,
                                           path=paths[index])
            if event is None:
                rejected.append({"index": index, "messageId": message.get("messageId"),
                                 "violations": [{"field": v.field,
                                                 "description": v.description}
                                                for v in problems]})
                continue
            events.append(event)
            event_paths.append(paths[index])
            event_index.append(index)
        accepted = duplicates = 0
        if events:
            try:
                outcomes = await self._ingest.publish(events, paths=event_paths)
            except Unavailable as error:
                logger.warning("tracking request not stored: %s", error)
                return _error(503, "temporarily unable to store events; retry")
            for index, outcome in zip(event_index, outcomes, strict=True):
                if outcome.status is PublishStatus.ACCEPTED:
                    accepted += 1
                elif outcome.status is PublishStatus.DUPLICATE:
                    duplicates += 1
                else:
                    rejected.append({"index": index, "messageId": outcome.event_id,
                                     "violations": [{"field": v.field,
                                                     "description": v.description}
                                                    for v in outcome.violations]})
        rejected.sort(key=lambda r: r["index"])
        reply = {"success": not rejected, "accepted": accepted, "duplicates": duplicates,
                 "rejected": rejected}
        status = 400 if rejected and not (accepted or duplicates) else 200
        return web.json_response(reply, status=status)
