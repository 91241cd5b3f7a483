"""Entry point: `python -m cdp_segmentation.main` or the segmentation pex."""

from __future__ import annotations

import sys

from cdp_grpc import run_main
from cdp_segmentation.bootstrap import SERVICE_NAME, attributes_for, serve
from cdp_segmentation.settings import load_segmentation_settings
from cdp_settings import SettingsError
from cdp_settings.config_files import ConfigError
from cdp_telemetry import configure_logging


def main() -> None:
    try:
        settings = load_segmentation_settings()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        attributes = attributes_for(settings)
    except ConfigError as error:
        print(f"error: invalid attribute schema:\n{error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    run_main(serve(settings, attributes=attributes))


if __name__ == "__main__":
    main()
