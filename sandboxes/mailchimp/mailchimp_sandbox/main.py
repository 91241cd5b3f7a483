"""Entry point: `python -m mailchimp_sandbox.main` or the mailchimp-sandbox pex."""

from __future__ import annotations

import asyncio
import logging
import signal

from cdp_grpc import load_settings_or_exit, run_main, tune_garbage_collection
from cdp_telemetry import configure_logging
from mailchimp_sandbox.app import SandboxConfig, start_sandbox, stop_sandbox
from mailchimp_sandbox.faults import Faults
from mailchimp_sandbox.settings import SandboxSettings

logger = logging.getLogger(__name__)

async def serve(settings: SandboxSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = SandboxConfig(
        api_key=settings.api_key.reveal(),
        default_list_id=settings.list_id,
        double_optin=settings.double_optin,
        validate_webhook_urls=settings.validate_webhook_urls,
        faults=Faults(latency_ms=settings.latency_ms),
    )
    runner, sandbox, url = await start_sandbox(config, host=settings.host, port=settings.port)
    logger.info("mailchimp sandbox serving on %s/3.0 (audience %s)", url, settings.list_id)
    try:
        await stop.wait()
    finally:
        logger.info("mailchimp sandbox stopping")
        await stop_sandbox(runner, sandbox)


def main() -> None:
    settings = load_settings_or_exit(SandboxSettings)
    configure_logging("mailchimp-sandbox", level=settings.log_level, fmt=settings.log_format)
    # The account is a large heap of long-lived member dicts that never form cycles, and
    # every 500-member batch builds, encodes and drops 500 member views.
    tune_garbage_collection()
    run_main(serve(settings))


if __name__ == "__main__":
    main()
