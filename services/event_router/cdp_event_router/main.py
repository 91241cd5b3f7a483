"""Entry point: `python -m cdp_event_router.main` or the event-router pex."""

from __future__ import annotations

from cdp_event_router.bootstrap import SERVICE_NAME, load_config, serve
from cdp_event_router.settings import EventRouterSettings
from cdp_grpc import exit_on, load_settings_or_exit, run_main
from cdp_settings.config_files import ConfigError
from cdp_telemetry import configure_logging


def main() -> None:
    settings = load_settings_or_exit(EventRouterSettings)
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    with exit_on(ConfigError, ValueError, heading="invalid configuration:"):
        load_config(settings)
    run_main(serve(settings))


if __name__ == "__main__":
    main()
