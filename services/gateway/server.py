"""Run both APIs in one event loop: uvicorn for HTTP, grpc.aio for gRPC, sharing one Frontend.

On SIGTERM the gateway stops taking requests and lets those in flight finish for up to `DRAIN_S`;
what is still running then ends with 503 / UNAVAILABLE ("shutting down; retry"), and its request
is cancelled at the scheduler. It returns as soon as nothing is left in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.gateway.chat import ChatTemplate
from services.gateway.config import GatewayConfig
from services.gateway.frontend import Frontend
from services.gateway.grpc_api import SERVICE, GatewayService, handlers
from services.gateway.metrics import GatewayMetrics
from services.gateway.openai_api import create_app
from services.gateway.prepare import Preparer
from services.gateway.text import ModelFiles
from services.shell import StartupError, check_port, grpc_server, health_names, listen

log = logging.getLogger("ecoserve.gateway")
DRAIN_S = 2.0  # at shutdown, how long requests in flight may take to finish


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the service's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_socket(host: str, port: int) -> socket.socket:
    """The HTTP API's listening socket, bound here so that a taken port is one line, not uvicorn's log."""
    address = f"{host}:{port}"
    check_port(address, "HTTP")
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(sockaddr)
    except OSError as exc:  # taken since the check
        sock.close()
        raise StartupError(f"cannot listen on {address} (HTTP): {exc.strerror}") from None
    return sock


async def _drain(frontend: Frontend) -> None:
    """Until no request is in flight, or DRAIN_S; then the rest end with "shutting down; retry"."""
    deadline = asyncio.get_running_loop().time() + DRAIN_S
    while frontend.in_flight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    frontend.scheduler.end_streams()


async def serve(config: GatewayConfig, stop: asyncio.Event) -> None:
    grpc_address = f"{config.host}:{config.grpc_port}"
    check_port(grpc_address, "gRPC")
    http_socket = _http_socket(config.host, config.http_port)
    try:
        await _serve(config, stop, grpc_address, http_socket)
    finally:
        http_socket.close()


async def _serve(config: GatewayConfig, stop: asyncio.Event, grpc_address: str, http_socket: socket.socket) -> None:
    files = ModelFiles.load(config.model_dir)
    preparer = Preparer(config, files, ChatTemplate.for_model(files))
    metrics = GatewayMetrics(preparer.model_name)
    frontend = Frontend.connect(config, files, metrics)
    server = grpc_server([("grpc.max_receive_message_length", config.limits.max_body_bytes)])
    server.add_generic_rpc_handlers((handlers(GatewayService(frontend, preparer)),))
    health_svc = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_svc, server)
    await listen(server, grpc_address, "gRPC")
    http = _Uvicorn(uvicorn.Config(create_app(frontend, preparer), log_level="warning", lifespan="off",
                                   timeout_graceful_shutdown=DRAIN_S + 2))  # a backstop: see _drain
    await server.start()
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
    while not http.started:
        if http_task.done():
            await server.stop(None)
            await http_task  # re-raises why it could not start
            raise StartupError(f"HTTP server on {config.host}:{config.http_port} did not start")
        await asyncio.sleep(0.02)
    for name in health_names(SERVICE):
        await health_svc.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gateway: HTTP on %s:%d, gRPC on %s:%d, model %s, scheduler %s, predictor %s", config.host,
             config.http_port, config.host, config.grpc_port, preparer.model_name, config.scheduler,
             config.predictor or "none")
    await stop.wait()
    for name in health_names(SERVICE):
        await health_svc.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    http.should_exit = True  # no new connections; idle ones close
    stopped = asyncio.ensure_future(server.stop(grace=DRAIN_S + 1))  # no new calls; a backstop too
    await _drain(frontend)
    await asyncio.gather(http_task, stopped)
    await frontend.close()
