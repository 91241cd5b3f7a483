"""Entry point: `python -m cdp_segmentation.main` or the segmentation pex."""

from __future__ import annotations

from cdp_grpc import exit_on, run_main
from cdp_segmentation.bootstrap import SERVICE_NAME, attributes_for, serve
from cdp_segmentation.settings import load_segmentation_settings
from cdp_settings import SettingsError
from cdp_settings.config_files import ConfigError
from cdp_telemetry import configure_logging


def main() -> None:
    with exit_on(SettingsError):
        settings = load_segmentation_settings()
    with exit_on(ConfigError, heading="invalid attribute schema:"):
        attributes = attributes_for(settings)
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    run_main(serve(settings, attributes=attributes))


if __name__ == "__main__":
    main()
