"""Entry point: `python -m cdp_profile.main` or the profile pex."""

from __future__ import annotations

import sys

from cdp_grpc import run_main
from cdp_mappings import ConfigError
from cdp_profile.bootstrap import SERVICE_NAME, config_for, serve
from cdp_profile.settings import load_profile_settings
from cdp_settings import SettingsError
from cdp_telemetry import configure_logging


def main() -> None:
    try:
        settings = load_profile_settings()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        config = config_for(settings)
    except ConfigError as error:
        print(f"error: invalid profile configuration:\n{error}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    run_main(serve(settings, config=config))


if __name__ == "__main__":
    main()
