"""The suite's gRPC runtime: servers, channels, error mapping, auth and lifecycle."""

from cdp_grpc.channel import GrpcClientSettings, create_channel
from cdp_grpc.errors import ErrorMappingInterceptor, field_violations_of
from cdp_grpc.lifecycle import (
    background,
    exit_on,
    load_settings_or_exit,
    run_main,
    stop_on_signals,
    tune_garbage_collection,
)
from cdp_grpc.server import GrpcServer, GrpcServerSettings, ServiceRegistration, serving

__all__ = [
    "ErrorMappingInterceptor",
    "GrpcClientSettings",
    "GrpcServer",
    "GrpcServerSettings",
    "ServiceRegistration",
    "background",
    "create_channel",
    "exit_on",
    "field_violations_of",
    "load_settings_or_exit",
    "run_main",
    "serving",
    "stop_on_signals",
    "tune_garbage_collection",
]
