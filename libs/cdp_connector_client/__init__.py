"""The client side of the Connector contract, shared by every service that calls connectors:
where each platform's connector listens (`connector_addresses`) and one lazily dialled
channel per platform (`ConnectorChannels`)."""

from cdp_connector_client.addresses import (
    connector_addresses,
    connector_variable,
    service_variable,
)
from cdp_connector_client.channels import ConnectorChannels

__all__ = ["ConnectorChannels", "connector_addresses", "connector_variable", "service_variable"]
