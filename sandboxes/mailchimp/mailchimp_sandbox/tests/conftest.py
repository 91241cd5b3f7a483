from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import mailchimp_marketing
import pytest
from mailchimp_sandbox.app import Sandbox, SandboxConfig, start_sandbox, stop_sandbox
from mailchimp_sandbox.settings import SANDBOX_API_KEY

T = TypeVar("T")
LIST_ID = "c0ffee0001"


@dataclass
class RunningSandbox:
    url: str
    state: Sandbox

    def client(self, api_key: str = SANDBOX_API_KEY) -> Any:
        client = mailchimp_marketing.Client()
        client.set_config({"api_key": api_key, "timeout": 10})
        # The documented way to point the SDK elsewhere (set_config never touches host).
        client.api_client.host = f"{self.url}/3.0"
        return client

    async def call(self, operation: Callable[[Any], T], api_key: str = SANDBOX_API_KEY) -> T:
        """Runs a synchronous SDK call off the loop that serves the sandbox."""
        client = self.client(api_key)
        return await asyncio.to_thread(operation, client)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        def send() -> Any:
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(
                f"{self.url}{path}", data=data, method=method,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                return json.loads(reply.read())

        return await asyncio.to_thread(send)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    config = SandboxConfig(api_key=SANDBOX_API_KEY, webhook_retry_delays=(0.05, 0.1, 0.2))
    runner, state, url = await start_sandbox(config)
    try:
        yield RunningSandbox(url, state)
    finally:
        await stop_sandbox(runner, state)
