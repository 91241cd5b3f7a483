"""Entry point: `python -m cdp_mailchimp_connector.main` or the mailchimp pex."""

from __future__ import annotations

from cdp_grpc import load_settings_or_exit, run_main, tune_garbage_collection
from cdp_mailchimp_connector.bootstrap import SERVICE_NAME, serve
from cdp_mailchimp_connector.settings import ConnectorSettings
from cdp_telemetry import configure_logging


def main() -> None:
    settings = load_settings_or_exit(ConnectorSettings)
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    # Every 500-member batch reply the SDK decodes is ~4,000 dicts and lists that die
    # together a few milliseconds later.
    tune_garbage_collection()
    run_main(serve(settings))


if __name__ == "__main__":
    main()
