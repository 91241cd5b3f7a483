"""Entry point: `python -m mailchimp_sandbox.main` or the mailchimp-sandbox pex."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from cdp_grpc import load_settings_or_exit, run_main
from cdp_telemetry import configure_logging
from mailchimp_sandbox.app import SandboxConfig, start_sandbox, stop_sandbox
from mailchimp_sandbox.faults import Faults
from mailchimp_sandbox.settings import SandboxSettings

logger = logging.getLogger(__name__)

# Collect the young generation every 50,000 container allocations instead of 700.
YOUNG_GC_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Keeps the cyclic collector from costing more than the calls it serves.

    The account is a large heap of long-lived member dicts that never form cycles, and every
    500-member batch adds 500 more and builds, encodes and drops 500 member views. With the
    default thresholds the collector ran every 700 allocations and rescanned the growing
    audience again and again. The imported heap lives as long as the process and is moved
    out of the collector's sight; the larger first threshold lets each call's views be freed
    by reference counting before the collector looks at them.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)


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
    tune_garbage_collector()
    run_main(serve(settings))


if __name__ == "__main__":
    main()
