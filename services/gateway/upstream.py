"""The gateway's clients: the scheduler (submit, resume, cancel, stats) and the predictor (batched).

A token stream that breaks after the scheduler accepted the request (a scheduler restart) is
resumed with Attach from the first token not yet received, as `ecoserve.client` does; a refusal
before acceptance becomes the matching GatewayError at once, so clients get 400/429/503 promptly.
At shutdown, `end_streams` ends the streams still open with UNAVAILABLE (503: retry elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ecoserve.core.request import Prediction
from ecoserve.proto import predictor_pb2, predictor_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from services.gateway.errors import ErrorKind, GatewayError

log = logging.getLogger("ecoserve.gateway")
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
              grpc.StatusCode.INTERNAL)


def refusal(exc: grpc.aio.AioRpcError, retry_after_s: int) -> GatewayError:
    """The scheduler refused a submission: the same refusal, in the gateway's terms."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return GatewayError(ErrorKind.INVALID, details)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return GatewayError(ErrorKind.OVERLOADED, f"the scheduler is full: {details}", retry_after_s)
    return GatewayError(ErrorKind.UNAVAILABLE, f"the scheduler is unavailable ({code.name}): {details}",
                        retry_after_s)


class SchedulerClient:
    def __init__(self, target: str, retry_after_s: int = 1, resume_timeout_s: float = 60.0) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = scheduler_pb2_grpc.SchedulerStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.retry_after_s = retry_after_s
        self.resume_timeout_s = resume_timeout_s
        self.closing = False
        self._calls: set[grpc.aio.Call] = set()

    def end_streams(self) -> None:
        """Shutdown: no new submissions; every stream still open ends with a 503 to retry elsewhere (its
        request is cancelled at the scheduler, as for a client that went away)."""
        self.closing = True
        for call in list(self._calls):
            call.cancel()

    def _shutting_down(self) -> GatewayError:
        return GatewayError(ErrorKind.UNAVAILABLE, "the gateway is shutting down; retry", self.retry_after_s)

    async def stream(self, submit: scheduler_pb2.SubmitRequest) -> AsyncIterator[scheduler_pb2.TokenEvent]:
        """Token events; the first carries only the request id, the last has `finished`."""
        rid: int | None = None
        received = 0
        deadline = 0.0
        while True:
            if self.closing:
                raise self._shutting_down()
            if rid is None:
                call = self.stub.Submit(submit)
            else:
                call = self.stub.Attach(scheduler_pb2.AttachRequest(request_id=rid, from_index=received),
                                        wait_for_ready=True, timeout=max(0.1, deadline - time.monotonic()))
            self._calls.add(call)
            try:
                async for event in call:
                    if rid is None:
                        rid = event.request_id
                    elif event.has_token:
                        if event.index != received:
                            continue  # delivered before the stream broke
                        received += 1
                    yield event
                    if event.finished:
                        return
                code, details = grpc.StatusCode.UNAVAILABLE, "stream ended without a finish"
            except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
                if self.closing:  # ended by end_streams
                    raise self._shutting_down() from None
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if rid is None:
                    raise refusal(exc, self.retry_after_s) from None
                code, details = exc.code(), exc.details()
            finally:
                self._calls.discard(call)
                call.cancel()
            if not deadline:
                deadline = time.monotonic() + self.resume_timeout_s
            if code not in _RESUMABLE or time.monotonic() > deadline:
                raise GatewayError(ErrorKind.UNAVAILABLE, f"lost request {rid}: {code.name} {details}",
                                   self.retry_after_s)
            log.warning("stream of request %s broke (%s); resuming from token %d", rid, code.name, received)
            await asyncio.sleep(0.1)

    async def cancel(self, request_id: int) -> None:
        try:
            await self.stub.Cancel(scheduler_pb2.CancelRequest(request_id=request_id), timeout=5)
        except grpc.aio.AioRpcError as exc:
            log.warning("cancel of request %d failed: %s", request_id, exc.code().name)

    async def stats(self, timeout_s: float = 1.0) -> scheduler_pb2.StatsResponse | None:
        try:
            return await self.stub.Stats(scheduler_pb2.StatsRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return None

    async def serving(self, timeout_s: float = 1.0) -> bool:
        try:
            reply = await self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def close(self) -> None:
        await self.channel.close()


@dataclass(frozen=True, slots=True)
class PredictionResult:
    prediction: Prediction | None  # None: the predictor did not answer in time
    model_version: str = ""


class PredictorClient:
    """Predictions for single requests, sent in batches: while one call is in flight, the
    requests that arrive wait and go together in the next one."""

    def __init__(self, target: str, timeout_s: float, max_batch: int = 256) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = predictor_pb2_grpc.PredictorStub(self.channel)
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self._queue: list[tuple[predictor_pb2.PredictItem, asyncio.Future[PredictionResult]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def predict(self, prompt: str, max_tokens: int, *, messages: tuple[tuple[str, str], ...] = (),
                      prompt_tokens: int = 0, served_model: str = "") -> PredictionResult:
        """The chat's messages (role, content) go with the rendered prompt: the predictor reads the
        conversation's structure from them, and the prompt's token count saves it counting."""
        future: asyncio.Future[PredictionResult] = asyncio.get_running_loop().create_future()
        item = predictor_pb2.PredictItem(
            prompt=prompt, max_tokens=max_tokens, prompt_tokens=prompt_tokens, served_model=served_model,
            messages=[predictor_pb2.Turn(role=r, content=c) for r, c in messages])
        self._queue.append((item, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            return PredictionResult(None)

    async def _send(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            try:
                reply = await self.stub.Predict(predictor_pb2.PredictRequest(items=[item for item, _ in batch]),
                                                timeout=self.timeout_s)
                results = [PredictionResult(Prediction(p.point, p.upper, p.bucket), reply.model_version)
                           for p in reply.predictions]
            except grpc.aio.AioRpcError as exc:
                log.warning("predictor: %s %s", exc.code().name, exc.details())
                results = [PredictionResult(None)] * len(batch)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        await self.channel.close()
