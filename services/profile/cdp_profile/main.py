"""Entry point: `python -m cdp_profile.main` or the profile pex."""

from __future__ import annotations

import gc

from cdp_grpc import exit_on, run_main
from cdp_mappings import ConfigError
from cdp_profile.bootstrap import SERVICE_NAME, config_for, serve
from cdp_profile.settings import load_profile_settings
from cdp_settings import SettingsError
from cdp_telemetry import configure_logging

# Folding a batch keeps tens of thousands of small objects alive at once. With the default
# thresholds (a collection every 700 new container objects) the collector ran hundreds of
# times per batch and every few batches walked the whole heap, libraries included: about a
# fifth of the service's CPU. Reference counting frees nearly all of it (the collector is
# only needed for cycles), so collections are made rarer, and what is loaded at start
# (modules, configuration) is frozen out of the collector's sight.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collection() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main() -> None:
    with exit_on(SettingsError):
        settings = load_profile_settings()
    with exit_on(ConfigError, heading="invalid profile configuration:"):
        config = config_for(settings)
    configure_logging(
        SERVICE_NAME, level=settings.telemetry.log_level, fmt=settings.telemetry.log_format
    )
    tune_garbage_collection()
    run_main(serve(settings, config=config))


if __name__ == "__main__":
    main()
