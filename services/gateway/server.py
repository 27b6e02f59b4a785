"""Run both APIs in one event loop: uvicorn for HTTP, grpc.aio for gRPC, sharing one Frontend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import grpc
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

log = logging.getLogger("ecoserve.gateway")


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the service's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: GatewayConfig, stop: asyncio.Event) -> None:
    files = ModelFiles.load(config.model_dir)
    preparer = Preparer(config, files, ChatTemplate.for_model(files))
    metrics = GatewayMetrics(preparer.model_name)
    frontend = Frontend.connect(config, files, metrics)
    grpc_server = grpc.aio.server(options=[("grpc.max_receive_message_length", config.limits.max_body_bytes)])
    grpc_server.add_generic_rpc_handlers((handlers(GatewayService(frontend, preparer)),))
    health_svc = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_svc, grpc_server)
    if grpc_server.add_insecure_port(f"{config.host}:{config.grpc_port}") == 0:
        raise RuntimeError(f"cannot listen on {config.host}:{config.grpc_port}")
    http = _Uvicorn(uvicorn.Config(create_app(frontend, preparer), host=config.host, port=config.http_port,
                                   log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():
            await http_task  # re-raises why it could not start (e.g. the port is taken)
            raise RuntimeError(f"HTTP server on {config.host}:{config.http_port} did not start")
        await asyncio.sleep(0.02)
    for name in ("", SERVICE):
        await health_svc.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gateway: HTTP on %s:%d, gRPC on %s:%d, model %s, scheduler %s, predictor %s", config.host,
             config.http_port, config.host, config.grpc_port, preparer.model_name, config.scheduler,
             config.predictor or "none")
    await stop.wait()
    for name in ("", SERVICE):
        await health_svc.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    http.should_exit = True
    await asyncio.gather(http_task, grpc_server.stop(grace=2))
    await frontend.close()
