"""What every service's composition root shares: the resources of one service process.

    async with hosting(SERVICE_NAME, settings.telemetry, telemetry=telemetry, stop=stop) as host:
        database = await host.open_database(settings.database, schema=SCHEMA, migrations=...)
        await host.connect_nats(settings.nats)
        outbox = await host.start_outbox_relay(SCHEMA)
        ...  # the service's own wiring: build_app, peers, consumers
        await host.serve(settings.grpc, registration, default_port=DEFAULT_PORT)
"""

from cdp_service.host import OnServing, ServiceHost, hosting

__all__ = ["OnServing", "ServiceHost", "hosting"]
