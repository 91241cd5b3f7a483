"""Connecting to NATS and declaring the JetStream streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from cdp_bus.subjects import STREAMS, StreamSpec
from cdp_errors import Unavailable
from cdp_settings import setting

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NatsSettings:
    url: str = setting("NATS_URL", doc="NATS server(s), e.g. nats://127.0.0.1:4222")
    connect_timeout_seconds: float = setting("CDP_NATS_CONNECT_TIMEOUT_SECONDS", default=5.0)
    stream_replicas: int = setting(
        "CDP_NATS_STREAM_REPLICAS", default=1, doc="JetStream replicas per stream (3 in a cluster)"
    )


async def connect_nats(settings: NatsSettings, *, name: str) -> Client:
    """A NATS connection that reconnects forever; a service survives NATS restarting."""

    async def on_disconnected() -> None:
        logger.warning("disconnected from NATS")

    async def on_reconnected() -> None:
        logger.info("reconnected to NATS")

    async def on_error(error: Exception) -> None:
        logger.warning("NATS error: %s", error)

    try:
        return await nats.connect(
            servers=[url.strip() for url in settings.url.split(",")],
            name=name,
            connect_timeout=settings.connect_timeout_seconds,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
            error_cb=on_error,
        )
    except Exception as error:
        raise Unavailable(f"cannot connect to NATS: {type(error).__name__}: {error}") from error


async def close_nats(client: Client, *, timeout: float = 10.0) -> None:
    """Drains the connection (pending publishes and acks go out); closes it if draining fails."""
    if client.is_closed:
        return
    try:
        await asyncio.wait_for(client.drain(), timeout)
    except Exception as error:  # NATS already gone: nothing left to flush
        logger.warning("NATS drain failed at shutdown (%s); closing", type(error).__name__)
        with contextlib.suppress(Exception):
            await client.close()


def stream_config(spec: StreamSpec, *, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_seconds,
        duplicate_window=spec.duplicate_window_seconds,
        num_replicas=replicas,
    )


async def ensure_streams(
    js: JetStreamContext, specs: Iterable[StreamSpec] = STREAMS, *, replicas: int = 1
) -> None:
    """Creates each stream, or updates it to the declared configuration. Idempotent."""
    for spec in specs:
        config = stream_config(spec, replicas=replicas)
        try:
            await js.stream_info(spec.name)
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)


async def check_nats(client: Client) -> None:
    """Raises Unavailable unless the connection is up and the server answers."""
    if not client.is_connected:
        raise Unavailable("NATS connection is down")
    try:
        await client.flush(timeout=2)
    except Exception as error:
        raise Unavailable(f"NATS does not answer: {type(error).__name__}") from error
