"""Delivering list webhooks the way Mailchimp does: form-encoded POSTs, retried, optionally
signed, filtered by each webhook's `events` and `sources`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

from mailchimp_sandbox.account import Account, Notice

logger = logging.getLogger(__name__)

USER_AGENT = "MailChimp.com"
VALIDATOR_USER_AGENT = "MailChimp.com WebHook Validator"
SIGNATURE_HEADER = "X-Mailchimp-Signature"


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}[{key}]", inner)
    elif isinstance(value, list):
        yield prefix, ",".join(str(item) for item in value)
    else:
        yield prefix, "" if value is None else str(value)


def form_body(notice: Notice) -> str:
    """PHP-style bracket keys: `type=...&fired_at=...&data[merges][FNAME]=...`."""
    pairs = [("type", notice.type), ("fired_at", notice.fired_at)]
    pairs += list(_flatten("data", notice.data))
    return urlencode(pairs)


def signature(secret: str, body: str, timestamp: int) -> str:
    digest = hmac.new(
        secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookDispatcher:
    """Drains `account.notices` and POSTs each to the list's matching webhooks."""

    def __init__(
        self,
        account: Account,
        *,
        retry_delays: Sequence[float] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
        timeout: float = 10.0,
        sign: bool = True,
    ) -> None:
        self.account = account
        self.retry_delays = list(retry_delays)
        self.timeout = timeout
        self.sign = sign
        self.delivered = 0
        self.failed_attempts = 0
        self.abandoned = 0
        self._wakeup = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._retries: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wakeup.set()

    async def validate(self, url: str) -> bool:
        """Mailchimp's validator GET, sent when a webhook is created."""
        session = await self._client()
        try:
            async with session.get(url, headers={"User-Agent": VALIDATOR_USER_AGENT}) as reply:
                return reply.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    async def run(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self.account.notices:
                    notice = self.account.notices.pop(0)
                    await self._deliver_all(notice)
        finally:
            for task in list(self._retries):
                task.cancel()
            if self._session is not None:
                await self._session.close()

    async def _deliver_all(self, notice: Notice) -> None:
        audience = self.account.lists.get(notice.list_id)
        if audience is None:
            return
        for hook in list(audience.webhooks.values()):
            if not hook["events"].get(notice.type) or not hook["sources"].get(notice.source):
                continue
            body = form_body(notice)
            if not await self._post(hook, body):
                task = asyncio.create_task(self._retry(hook, body))
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)

    async def _post(self, hook: dict[str, Any], body: str) -> bool:
        headers = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if self.sign and hook.get("signing_secret"):
            headers[SIGNATURE_HEADER] = signature(hook["signing_secret"], body, int(time.time()))
        session = await self._client()
        try:
            async with session.post(hook["url"], data=body.encode(), headers=headers) as reply:
                ok = 200 <= reply.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.delivered += 1
        else:
            self.failed_attempts += 1
        return ok

    async def _retry(self, hook: dict[str, Any], body: str) -> None:
        for delay in self.retry_delays:
            await asyncio.sleep(delay)
            if await self._post(hook, body):
                return
        self.abandoned += 1
        logger.warning("webhook %s: delivery abandoned after %d retries", hook["id"],
                       len(self.retry_delays))

    async def close(self) -> None:
        for task in list(self._retries):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
