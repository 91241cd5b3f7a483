"""Entry point: `python -m cdp_event_router.main` or the event-router pex."""

from __future__ import annotations

import sys

from cdp_event_router.bootstrap import SERVICE_NAME, load_config, serve
from cdp_event_router.settings import EventRouterSettings
from cdp_grpc import load_settings_or_exit, run_main
from cdp_settings.config_files import ConfigError
from cdp_telemetry import configure_logging


def main() -> None:
    settings = load_settings_or_exit(EventRouterSettings)
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    try:
        load_config(settings)
    except (ConfigError, ValueError) as error:
        print(f"error: invalid configuration:\n{error}", file=sys.stderr)
        raise SystemExit(2) from None
    run_main(serve(settings))


if __name__ == "__main__":
    main()
