"""The predictor's gRPC surface (Predict, Retrain, Info, health) and its Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc
import redis.asyncio as aredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ecoserve.predictor import RLPredictor
from ecoserve.proto import common_pb2, predictor_pb2
from services.predictor.learner import Learner, LearnerConfig, warm_up
from services.scheduler.protocol import ProtocolError, lenient, require
from services.shell import StartupError, check_port, grpc_server, health_names, listen

log = logging.getLogger("ecoserve.predictor")
SERVICE = "ecoserve.v1.Predictor"


@dataclass(frozen=True, slots=True)
class PredictorConfig:
    model: str | None = None  # None: the model shipped in the package
    tokenizer: str | None = None
    redis_url: str | None = None  # None: no completion log, no retraining
    learner: LearnerConfig = LearnerConfig()
    max_batch: int = 4096
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0  # 0: no metrics endpoint


class Metrics:
    def __init__(self, learner: Learner) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter("ecoserve:predictor_predictions", "Prompts predicted", registry=r)
        self.batch = Histogram("ecoserve:predictor_batch_size", "Prompts per Predict call", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024))
        self.latency = Histogram("ecoserve:predictor_predict_seconds", "Time to answer one Predict call", registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
        summary = learner.live.summary
        for name, doc, pick in (
            ("live_samples", "Completions in the live-error window", lambda: summary().samples),
            ("live_mae_tokens", "Mean |actual - point| of the served model", lambda: summary().mae_tokens),
            ("live_relative_error", "Mean |actual - point| / actual", lambda: summary().mean_relative_error),
            ("live_upper_coverage", "Share of requests with actual <= upper", lambda: summary().upper_coverage),
            ("model_version", "Number of the served model (0: the base model)", lambda: learner.version_number),
            ("retrains", "Models swapped in since start", lambda: learner.retrains),
            ("completions_seen", "Completion-log entries read since start", lambda: learner.seen),
        ):
            Gauge(f"ecoserve:predictor_{name}", doc, registry=r).set_function(pick)


class PredictorService:
    def __init__(self, learner: Learner, config: PredictorConfig) -> None:
        self.learner = learner
        self.config = config
        self.metrics = Metrics(learner)

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> predictor_pb2.PredictResponse:
        msg = await _check(context, request, predictor_pb2.PredictRequest)
        if len(msg.items) > self.config.max_batch:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{len(msg.items)} items; at most {self.config.max_batch} per call")
        if any(item.max_tokens < 0 for item in msg.items):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "max_tokens must be >= 0 (0: no cap)")
        start = time.perf_counter()
        prompts = [[{"role": t.role, "content": t.content} for t in item.messages] or item.prompt for item in msg.items]
        caps = [item.max_tokens or None for item in msg.items]
        counts = [item.prompt_tokens or None for item in msg.items]
        served = [item.served_model for item in msg.items]
        predictions, version = await asyncio.to_thread(self.learner.predict, prompts, caps, counts, served)
        self.metrics.latency.observe(time.perf_counter() - start)
        self.metrics.batch.observe(len(prompts))
        self.metrics.predictions.inc(len(prompts))
        return predictor_pb2.PredictResponse(
            predictions=[common_pb2.Prediction(point=p.point, upper=p.upper, bucket=p.bucket) for p in predictions],
            model_version=version)

    async def Retrain(self, request: Any, context: grpc.aio.ServicerContext) -> predictor_pb2.RetrainResponse:
        await _check(context, request, predictor_pb2.RetrainRequest)
        result = await self.learner.retrain()
        log.info("retrain on demand: %s", result.message)
        return predictor_pb2.RetrainResponse(swapped=result.swapped, model_version=result.version,
                                             completions=result.completions, message=result.message)

    async def Info(self, request: Any, context: grpc.aio.ServicerContext) -> predictor_pb2.InfoResponse:
        await _check(context, request, predictor_pb2.InfoRequest)
        s = self.learner.live.summary()
        return predictor_pb2.InfoResponse(
            model_version=self.learner.version, quantile=self.learner.predictor.quantile,
            completions_seen=self.learner.seen, retrains=self.learner.retrains,
            last_retrain_error=self.learner.last_error,
            live_error=predictor_pb2.LiveError(samples=s.samples, mae_tokens=s.mae_tokens,
                                               mean_relative_error=s.mean_relative_error,
                                               upper_coverage=s.upper_coverage),
            calibrations=[predictor_pb2.Calibration(
                served_model=c.served_model, completions=c.completions,
                recent_under_prediction=c.recent_under_prediction, recent_mean_log_error=c.recent_mean_log_error,
                drifts=c.drifts) for c in self.learner.predictor.calibrator.status()])


async def _check(context: grpc.aio.ServicerContext, request: Any, cls: Any) -> Any:
    try:
        return require(request, cls)
    except ProtocolError as exc:
        await context.abort(exc.code, exc.message)


def _handlers(svc: PredictorService) -> grpc.GenericRpcHandler:
    p = predictor_pb2
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Predict": grpc.unary_unary_rpc_method_handler(svc.Predict, lenient(p.PredictRequest),
                                                       p.PredictResponse.SerializeToString),
        "Retrain": grpc.unary_unary_rpc_method_handler(svc.Retrain, lenient(p.RetrainRequest),
                                                       p.RetrainResponse.SerializeToString),
        "Info": grpc.unary_unary_rpc_method_handler(svc.Info, lenient(p.InfoRequest), p.InfoResponse.SerializeToString),
    })


async def serve(config: PredictorConfig, address: str, stop: asyncio.Event) -> None:
    """Load the model, serve until `stop`; SERVING once the model (and a published one) is loaded and
    has answered once (its first prediction builds the forest, which a request must not wait for)."""
    check_port(address, "predictor gRPC")  # before the model loads: a taken port fails at once
    if config.metrics_port:
        check_port(f"{config.metrics_host}:{config.metrics_port}", "predictor metrics")
    predictor = await asyncio.to_thread(RLPredictor.load, config.model, tokenizer=config.tokenizer)
    client = aredis.Redis.from_url(config.redis_url) if config.redis_url else None
    learner = Learner(predictor, client, config.learner)
    svc = PredictorService(learner, config)
    server = grpc_server()
    server.add_generic_rpc_handlers((_handlers(svc),))
    health_svc = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_svc, server)
    await listen(server, address, "predictor gRPC")
    if config.metrics_port:
        try:
            start_http_server(config.metrics_port, config.metrics_host, registry=svc.metrics.registry)
        except OSError as exc:
            await server.stop(None)
            raise StartupError(f"cannot listen on {config.metrics_host}:{config.metrics_port} "
                               f"(predictor metrics): {exc.strerror}") from None
    if client is not None:
        await learner.adopt_published()
    await asyncio.to_thread(warm_up, learner.predictor)
    await server.start()
    follower = asyncio.create_task(learner.follow(stop))
    for name in health_names(SERVICE):
        await health_svc.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("predictor on %s: model %s (%s), completion log %s", address, config.model or "shipped default",
             learner.version, "on" if client else "off")
    await stop.wait()
    for name in health_names(SERVICE):
        await health_svc.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace=2)
    await follower
    if client is not None:
        await client.aclose()
