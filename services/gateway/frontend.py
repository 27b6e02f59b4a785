"""The gateway's pipeline, shared by both APIs: admit, predict, submit, stream, detokenize, account.

A request that ends early on the gateway's side (a stop string, the client went away, an error)
is cancelled at the scheduler, so its KV and compute go back at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aredis

from ecoserve.completion_log import CompletionLog, LoggedCompletion, encode_messages
from ecoserve.proto import common_pb2, scheduler_pb2
from services.gateway.config import GatewayConfig
from services.gateway.errors import ErrorKind, GatewayError
from services.gateway.metrics import GatewayMetrics
from services.gateway.prepare import Generation
from services.gateway.text import Detokenizer, ModelFiles, StopStrings
from services.gateway.upstream import PredictionResult, PredictorClient, SchedulerClient

log = logging.getLogger("ecoserve.gateway")
LOGGED_REASONS = ("stop", "length")  # finishes whose token count is a real response length


@dataclass(frozen=True, slots=True)
class Started:
    request_id: int


@dataclass(frozen=True, slots=True)
class Delta:
    token_id: int
    text: str  # may be empty (an incomplete character, or text that may start a stop string)


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str  # "stop", "length", "abort" or "error: ..."
    text: str  # the last text held back
    prompt_tokens: int
    completion_tokens: int


Event = Started | Delta | Finished


class Frontend:
    def __init__(self, config: GatewayConfig, files: ModelFiles, metrics: GatewayMetrics,
                 scheduler: SchedulerClient, predictor: PredictorClient | None,
                 completions: CompletionLog | None) -> None:
        self.config = config
        self.files = files
        self.metrics = metrics
        self.scheduler = scheduler
        self.predictor = predictor
        self.completions = completions
        self.in_flight = 0
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def connect(cls, config: GatewayConfig, files: ModelFiles, metrics: GatewayMetrics) -> Frontend:
        predictor = PredictorClient(config.predictor, config.predictor_timeout_s) if config.predictor else None
        log_ = (CompletionLog(aredis.Redis.from_url(config.redis_url), config.redis_prefix)
                if config.redis_url else None)
        return cls(config, files, metrics, SchedulerClient(config.scheduler, config.limits.retry_after_s),
                   predictor, log_)

    async def close(self) -> None:
        # a request cut at shutdown adds its cancel while earlier ones finish: until none is left
        while pending := [task for task in self._background if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)
        await self.scheduler.close()
        if self.predictor is not None:
            await self.predictor.close()
        if self.completions is not None:
            await self.completions.client.aclose()

    def _later(self, coro: object) -> None:
        """Run a coroutine to its end even if the request's task is being cancelled."""
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def generate(self, gen: Generation) -> AsyncIterator[Event]:
        if self.in_flight >= self.config.limits.max_queue:
            self.metrics.reject("queue_full")
            raise GatewayError(ErrorKind.OVERLOADED, f"{self.in_flight} requests in flight (limit "
                               f"{self.config.limits.max_queue}); retry later", self.config.limits.retry_after_s)
        self.in_flight += 1
        self.metrics.in_flight.labels(self.metrics.model_name).inc()
        try:
            async for event in self._serve(gen):
                yield event
        except GatewayError as exc:
            self.metrics.reject(exc.kind.name.lower())
            raise
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.labels(self.metrics.model_name).dec()

    async def _serve(self, gen: Generation) -> AsyncIterator[Event]:
        arrival = time.monotonic()
        predicted = await self._predict(gen)
        submit = self._submit(gen, predicted)
        detok, stops = Detokenizer(self.files.tokenizer), StopStrings(gen.stop)
        rid: int | None = None
        upstream_done = cancelled = False
        tokens, ttft, last = 0, None, None
        try:
            async for event in self.scheduler.stream(submit):
                if rid is None:
                    rid = event.request_id
                    yield Started(rid)
                    continue
                if event.has_token:
                    now = time.monotonic()
                    tokens += 1
                    ttft = now - arrival if ttft is None else ttft
                    self.metrics.token(None if last is None else now - last)
                    last = now
                    text, hit = stops.feed(detok.push(event.token_id))
                    if hit:  # free the scheduler's KV now, before the client has read the last text
                        reason, cancelled = "stop", True
                        self._later(self.scheduler.cancel(rid))
                    yield Delta(event.token_id, text)
                    if hit:
                        break
                if event.finished:
                    upstream_done = True
                    reason = event.finish_reason or "stop"
                    if reason.startswith("refused") and not tokens:  # overload control: retry later
                        raise GatewayError(ErrorKind.UNAVAILABLE, reason, self.config.limits.retry_after_s)
                    tail, hit = stops.feed(detok.flush())
                    tail += "" if hit else stops.flush()
                    break
            else:
                raise GatewayError(ErrorKind.UNAVAILABLE, "the scheduler ended the stream without a finish",
                                   self.config.limits.retry_after_s)
            # accounted before the last event: a consumer may stop iterating once it has it
            self._account(gen, predicted, reason, tokens, ttft, time.monotonic() - arrival)
            yield Finished(reason, tail if upstream_done else "", len(gen.prompt_ids), tokens)
        finally:
            if rid is not None and not (upstream_done or cancelled):
                self._later(self.scheduler.cancel(rid))

    async def _predict(self, gen: Generation) -> PredictionResult:
        if self.predictor is None:
            return PredictionResult(None)
        result = await self.predictor.predict(gen.prompt_text, gen.max_tokens, messages=gen.messages,
                                              prompt_tokens=len(gen.prompt_ids), served_model=self.metrics.model_name)
        if result.prediction is None:
            self.metrics.pred_fallback.labels(self.metrics.model_name).inc()
        return result

    @staticmethod
    def _submit(gen: Generation, predicted: PredictionResult) -> scheduler_pb2.SubmitRequest:
        params = common_pb2.SamplingParams(temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k,
                                           seed=gen.seed, max_tokens=gen.max_tokens,
                                           stop_token_ids=list(gen.stop_token_ids), ignore_eos=gen.ignore_eos)
        submit = scheduler_pb2.SubmitRequest(prompt_token_ids=gen.prompt_ids, params=params, priority=gen.priority,
                                             slo=common_pb2.Slo(ttft_s=gen.slo.ttft, tpot_s=gen.slo.tpot))
        p = predicted.prediction
        if p is not None:
            submit.prediction.CopyFrom(common_pb2.Prediction(point=p.point, upper=p.upper, bucket=p.bucket))
        return submit

    def _account(self, gen: Generation, predicted: PredictionResult, reason: str, tokens: int,
                 ttft: float | None, e2e: float) -> None:
        tpot_ok = tokens <= 1 or ttft is None or (e2e - ttft) / (tokens - 1) <= gen.slo.tpot
        attained = ttft is not None and ttft <= gen.slo.ttft and tpot_ok
        self.metrics.finished(reason=reason if not reason.startswith("error") else "error",
                              prompt_tokens=len(gen.prompt_ids), tokens=tokens, ttft=ttft, e2e=e2e,
                              slo_class=gen.slo_class, attained=attained)
        p = predicted.prediction
        if p is not None and reason in LOGGED_REASONS:
            self.metrics.prediction(p.point, p.upper, tokens)
        if self.completions is not None and reason in LOGGED_REASONS:
            entry = LoggedCompletion(prompt=gen.prompt_text, prompt_tokens=len(gen.prompt_ids),
                                     max_tokens=gen.max_tokens, response_tokens=tokens, finish_reason=reason,
                                     point=p.point if p else 0, upper=p.upper if p else 0,
                                     model_version=predicted.model_version,
                                     messages=encode_messages(gen.messages), served_model=self.metrics.model_name)
            self._later(self._log(entry))

    async def _log(self, entry: LoggedCompletion) -> None:
        assert self.completions is not None
        try:
            await self.completions.append(entry)
        except aredis.RedisError as exc:  # the log is for learning: losing an entry never fails a request
            log.warning("completion log: %s", exc)
