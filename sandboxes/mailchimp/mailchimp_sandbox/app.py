"""The sandbox's HTTP server: Mailchimp's `/3.0` API over `Account`, plus `/_sandbox` controls.

Replies are encoded the way the SDK depends on (notes §7.4): successes are non-empty
`application/json`; tags, events, deletes and delete-permanent are 204 with no body; errors
are `application/problem+json; charset=utf-8` with an `X-Request-Id` equal to `instance`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from mailchimp_sandbox.account import Account
from mailchimp_sandbox.batches import Batches
from mailchimp_sandbox.errors import TRIGGERED, ApiError
from mailchimp_sandbox.faults import FaultPlan, Faults
from mailchimp_sandbox.webhooks import WebhookDispatcher

logger = logging.getLogger(__name__)

API_PREFIX = "/3.0"
PROBLEM = "application/problem+json"


@dataclass
class Stats:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    peak_in_flight: int = 0
    injected: Counter[str] = field(default_factory=Counter)

    def view(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_route": dict(self.by_route),
            "peak_in_flight": self.peak_in_flight,
            "injected": dict(self.injected),
        }


@dataclass
class SandboxConfig:
    api_key: str
    default_list_id: str = "c0ffee0001"
    double_optin: bool = False
    validate_webhook_urls: bool = True
    sign_webhooks: bool = True
    webhook_retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    faults: Faults = field(default_factory=Faults)


class Sandbox:
    """The state behind one running sandbox: account, batches, webhooks, faults, stats."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.faults = config.faults
        self.plan = FaultPlan(self.faults)
        self.stats = Stats()
        # Told (method, path, request body, status, response body) of every /3.0 call; the
        # conformance test checks each exchange against the official OpenAPI description.
        self.recorder: Callable[[str, str, bytes, int, bytes], None] | None = None
        self._dispatcher_task: asyncio.Task[None] | None = None
        self.reset()

    def reset(self) -> None:
        """A fresh account (the default list only); deliveries still queued are dropped."""
        self.account = Account(
            default_list_id=self.config.default_list_id, double_optin=self.config.double_optin
        )
        self.batches = Batches(self.account)
        self.webhooks = WebhookDispatcher(
            self.account,
            retry_delays=self.config.webhook_retry_delays,
            sign=self.config.sign_webhooks,
        )
        if self._dispatcher_task is not None:
            self._dispatcher_task.cancel()
            self.start_dispatcher()

    def start_dispatcher(self) -> None:
        self._dispatcher_task = asyncio.create_task(self.webhooks.run(), name="webhooks")

    async def close(self) -> None:
        if self._dispatcher_task is not None:
            self._dispatcher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher_task
            self._dispatcher_task = None
        await self.webhooks.close()
        await self.batches.close()

    def authorized(self, header: str) -> str | None:
        """The account key the request authenticates as, or None."""
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            presented = decoded.partition(":")[2]
        elif scheme.lower() == "bearer":
            presented = credentials
        else:
            return None
        if hmac.compare_digest(presented.encode(), self.config.api_key.encode()):
            return "account"
        return None


def problem(error: ApiError) -> web.Response:
    body = error.problem()
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        headers={
            "Content-Type": f"{PROBLEM}; charset=utf-8",
            "X-Request-Id": body["instance"],
            "Link": '<https://us1.api.mailchimp.com/schema/3.0/ProblemDetailDocument.json>; '
            'rel="describedBy"',
            **error.headers,
        },
    )


def json_reply(status: int, payload: Any) -> web.Response:
    if payload is None:
        return web.Response(status=204)
    # Batch replies carry 500 full member views: the standard encoder took 40% of the
    # sandbox's time under load, orjson a tenth of that.
    return web.Response(status=status, body=orjson.dumps(payload),
                        content_type="application/json")


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(
            400, "JSON Parse Exception", "We encountered an unspecified JSON parsing error."
        ) from None


def _route_name(method: str, path: str) -> str:
    parts = path.strip("/").split("/")
    shape = [parts[0]] + [p if not any(c.isdigit() for c in p) else "{}" for p in parts[1:]]
    return f"{method} /{'/'.join(shape)}"


async def _api(sandbox: Sandbox, request: web.Request) -> web.Response:
    path = request.path[len(API_PREFIX) :].rstrip("/") or "/"
    method = request.method
    query = dict(request.query)
    if path == "/batches" and method == "POST":
        reply = sandbox.batches.start(await _read_json(request), _base_url(request))
        return json_reply(200, reply)
    if path == "/batches" and method == "GET":
        return json_reply(200, sandbox.batches.list(query, _base_url(request)))
    if path.startswith("/batches/"):
        batch_id = path.split("/")[2]
        if method == "GET":
            return json_reply(200, sandbox.batches.status(batch_id, _base_url(request)))
        if method == "DELETE":
            sandbox.batches.delete(batch_id)
            return json_reply(204, None)
    body = await _read_json(request) if method in ("POST", "PUT", "PATCH") else None
    if method == "POST" and path.endswith("/webhooks") and sandbox.config.validate_webhook_urls:
        url = body.get("url") if isinstance(body, dict) else None
        if isinstance(url, str) and not await sandbox.webhooks.validate(url):
            raise ApiError(
                400,
                "Invalid Resource",
                f"The resource submitted could not be validated: the URL {url} did not return "
                "a 200 to the webhook validator's GET.",
                errors=[{"field": "url", "message": "did not answer the validator with 200"}],
            )
    status, reply = sandbox.account.dispatch(method, path, query, body)
    if sandbox.account.notices:
        sandbox.webhooks.wake()
    return json_reply(status, reply)


def _drop(request: web.Request) -> web.Response:
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


def build_app(sandbox: Sandbox) -> web.Application:
    @web.middleware
    async def api_layer(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/") and request.path != API_PREFIX:
            response: web.StreamResponse = await handler(request)
            return response
        stats = sandbox.stats
        stats.requests += 1
        key = sandbox.authorized(request.headers.get("Authorization", ""))
        if key is None:
            return _count(stats, problem(ApiError(
                401, "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong "
                "datacenter.",
            )))
        stats.in_flight[key] += 1
        try:
            stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight[key])
            response = _count(stats, await _guarded(sandbox, request, stats.in_flight[key]))
            if sandbox.recorder is not None:
                body = response.body
                sandbox.recorder(request.method, request.path, await request.read(),
                                 response.status,
                                 bytes(body) if isinstance(body, (bytes, bytearray)) else b"")
            return response
        finally:
            stats.in_flight[key] -= 1

    app = web.Application(middlewares=[api_layer], client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", API_PREFIX + "/{tail:.*}", _unreachable)
    add_control_routes(app, sandbox)
    return app


async def _unreachable(request: web.Request) -> web.Response:
    # The middleware answers every /3.0 call itself.
    raise web.HTTPNotFound()


def _count(stats: Stats, response: web.Response) -> web.Response:
    stats.by_status[response.status] += 1
    return response


async def _guarded(sandbox: Sandbox, request: web.Request, in_flight: int) -> web.Response:
    faults = sandbox.faults
    stats = sandbox.stats
    if in_flight > faults.max_in_flight:
        stats.injected["over_limit_429"] += 1
        return problem(ApiError(
            429, "Too Many Requests",
            f"You have exceeded the limit of {faults.max_in_flight} simultaneous connections.",
        ))
    trigger = request.headers.get("X-Trigger-Error")
    if trigger:
        status, title, detail = TRIGGERED.get(
            trigger, (400, "Bad Request", f"Unknown X-Trigger-Error {trigger}")
        )
        return problem(ApiError(status, title, detail))
    if sandbox.plan.member_fails(request.path):
        stats.injected["member_503"] += 1
        return problem(ApiError(
            503, "Service Unavailable", "This member cannot be reached right now."
        ))
    early = sandbox.plan.before()
    if early == "429":
        stats.injected["429"] += 1
        return problem(ApiError(
            429, "Too Many Requests",
            f"You have exceeded the limit of {faults.max_in_flight} simultaneous connections.",
        ))
    if early in ("bodiless_429", "bodiless_403"):
        stats.injected[early] += 1
        return web.Response(status=int(early[-3:]))
    # The latency is the least time a call takes on the server, counted from its arrival, as
    # a remote API's own processing is part of its response time: the work is done first,
    # then the reply waits out what is left.
    loop = asyncio.get_running_loop()
    due = loop.time() + sandbox.plan.extra_delay()
    failure = sandbox.plan.failure()
    if failure and not faults.errors_after_apply:
        await _until(loop, due)
        return _failure(request, stats, failure)
    try:
        response = await _api(sandbox, request)
    except ApiError as error:
        response = problem(error)
    stats.by_route[_route_name(request.method, request.path[len(API_PREFIX):])] += 1
    await _until(loop, due)
    if failure:
        return _failure(request, stats, failure)
    return response


async def _until(loop: asyncio.AbstractEventLoop, due: float) -> None:
    remaining = due - loop.time()
    if remaining > 0:
        await asyncio.sleep(remaining)


def _failure(request: web.Request, stats: Stats, failure: str) -> web.Response:
    stats.injected[failure] += 1
    if failure == "drop":
        return _drop(request)
    if failure == "html_502":
        return web.Response(
            status=502,
            text="<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body>"
            "</html>",
            content_type="text/html",
        )
    return problem(ApiError(
        500, "Internal Server Error", "An unexpected internal error has occurred."
    ))


def add_control_routes(app: web.Application, sandbox: Sandbox) -> None:
    """`/_sandbox/...`: health, fault switches, statistics, simulated changes, results."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING"})

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(sandbox.faults.view())

    async def set_faults(request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            sandbox.faults.update(dict(changes))
        except (ValueError, TypeError) as error:
            return web.json_response({"error": str(error)}, status=400)
        sandbox.plan.reseed()
        return web.json_response(sandbox.faults.view())

    async def get_stats(_: web.Request) -> web.Response:
        view = sandbox.stats.view()
        view["webhooks"] = {
            "delivered": sandbox.webhooks.delivered,
            "failed_attempts": sandbox.webhooks.failed_attempts,
            "abandoned": sandbox.webhooks.abandoned,
        }
        return web.json_response(view)

    async def reset_stats(_: web.Request) -> web.Response:
        sandbox.stats = Stats()
        return web.json_response(sandbox.stats.view())

    async def reset(_: web.Request) -> web.Response:
        sandbox.reset()
        return web.json_response({"status": "reset"})

    async def simulate(request: web.Request) -> web.Response:
        try:
            member = sandbox.account.simulate(request.match_info["list_id"], await request.json())
        except ApiError as error:
            return problem(error)
        sandbox.webhooks.wake()
        return web.json_response(member)

    async def activity(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            item = sandbox.account.record_activity(
                request.match_info["list_id"],
                str(body.get("email", "")),
                str(body.get("campaign_id", "")),
                str(body.get("action", "open")),
                str(body.get("url", "")),
            )
        except ApiError as error:
            return problem(error)
        return web.json_response(item)

    async def results(request: web.Request) -> web.Response:
        archive = sandbox.batches.archives.get(request.match_info["batch_id"])
        if archive is None:
            return problem(ApiError(404, "Resource Not Found", "No such batch results."))
        return web.Response(body=archive, content_type="application/x-gzip")

    app.router.add_get("/_sandbox/health", health)
    app.router.add_get("/_sandbox/faults", get_faults)
    app.router.add_post("/_sandbox/faults", set_faults)
    app.router.add_get("/_sandbox/stats", get_stats)
    app.router.add_post("/_sandbox/stats/reset", reset_stats)
    app.router.add_post("/_sandbox/reset", reset)
    app.router.add_post("/_sandbox/lists/{list_id}/simulate", simulate)
    app.router.add_post("/_sandbox/lists/{list_id}/activity", activity)
    app.router.add_get("/_sandbox/batch-results/{batch_id}.tar.gz", results)


async def start_sandbox(
    config: SandboxConfig, *, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, Sandbox, str]:
    """Starts a sandbox on `host:port` (a free port when 0); returns runner, state, base URL.

    Stop it with `await stop_sandbox(runner, sandbox)`.
    """
    sandbox = Sandbox(config)
    app = build_app(sandbox)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    sandbox.start_dispatcher()
    return runner, sandbox, f"http://{host}:{bound}"


async def stop_sandbox(runner: web.AppRunner, sandbox: Sandbox) -> None:
    await sandbox.close()
    await runner.cleanup()
