from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from cdp_cli.main import build_parser
from cdp_cli.runtime import Suite, UpOptions, service_status
from cdp_cli.services import by_name


def suite_with_binaries(tmp_path: Path, **extra_env: str) -> Suite:
    for spec in ("identity", "mailchimp_sandbox", "mailchimp"):
        (tmp_path / by_name(spec).binary).write_text("")
    return Suite(UpOptions(data_dir=tmp_path / "data", bin_dir=tmp_path, database_url=None,
                           nats_url=None, nats_port=0, extra_env=extra_env))


def test_the_sandbox_starts_only_when_no_mailchimp_api_key_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILCHIMP_API_KEY", raising=False)
    names = [s.name for s in suite_with_binaries(tmp_path).available_services()]
    assert names == ["identity", "mailchimp_sandbox", "mailchimp"]
    with_key = suite_with_binaries(tmp_path, MAILCHIMP_API_KEY="real-us6")
    assert [s.name for s in with_key.available_services()] == ["identity", "mailchimp"]


def test_the_sandbox_points_the_connector_at_itself() -> None:
    sandbox = by_name("mailchimp_sandbox")
    exported = {name: value.format(address="127.0.0.1:50160") for name, value in sandbox.exports}
    assert exported["MAILCHIMP_API_URL"] == "http://127.0.0.1:50160/3.0"
    assert exported["MAILCHIMP_API_KEY"].endswith("-us1")
    assert sandbox.port_env == "MAILCHIMP_SANDBOX_PORT" and sandbox.health == "http"


async def test_an_http_service_is_serving_when_its_health_path_answers_200() -> None:
    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/_sandbox/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        spec = by_name("mailchimp_sandbox")
        assert await service_status(spec, f"127.0.0.1:{port}") == "SERVING"
    finally:
        await runner.cleanup()
    assert await service_status(spec, f"127.0.0.1:{port}", timeout=0.5) == "UNREACHABLE"


def test_the_mailchimp_commands_are_registered() -> None:
    args = build_parser().parse_args(["mailchimp", "retry", "id-1", "id-2"])
    assert args.action == "retry" and args.ids == ["id-1", "id-2"]
