"""Test helpers: real PostgreSQL and NATS, in-process gRPC servers, span capture, waiting.

Import the fixtures into a conftest.py:

    from cdp_testing.fixtures import database_url, nats, postgres_admin_url, telemetry  # noqa: F401
"""

from cdp_testing.waiting import eventually, wait_until

__all__ = ["eventually", "wait_until"]
