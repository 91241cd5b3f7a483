"""Entry point: `python -m cdp_profile.main` or the profile pex."""

from __future__ import annotations

from cdp_grpc import exit_on, run_main, tune_garbage_collection
from cdp_mappings import ConfigError
from cdp_profile.bootstrap import SERVICE_NAME, config_for, serve
from cdp_profile.settings import load_profile_settings
from cdp_settings import SettingsError
from cdp_telemetry import configure_logging


def main() -> None:
    with exit_on(SettingsError):
        settings = load_profile_settings()
    with exit_on(ConfigError, heading="invalid profile configuration:"):
        config = config_for(settings)
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    # Folding a batch keeps tens of thousands of small objects alive at once.
    tune_garbage_collection()
    run_main(serve(settings, config=config))


if __name__ == "__main__":
    main()
