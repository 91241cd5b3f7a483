from cdp_testing.fixtures import (  # noqa: F401
    database_url,
    nats,
    postgres_admin_url,
    span_exporter,
    telemetry,
)
