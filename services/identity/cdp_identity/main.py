"""Entry point: `python -m cdp_identity.main` or the identity pex."""

from __future__ import annotations

from cdp_grpc import load_settings_or_exit, run_main, tune_garbage_collection
from cdp_identity.bootstrap import SERVICE_NAME, serve
from cdp_identity.settings import IdentitySettings
from cdp_telemetry import configure_logging


def main() -> None:
    settings = load_settings_or_exit(IdentitySettings)
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    # A batch of 10,000 identifier sets is tens of thousands of small objects alive at once.
    tune_garbage_collection()
    run_main(serve(settings))


if __name__ == "__main__":
    main()
