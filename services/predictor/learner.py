"""The predictor service's model: serves it, follows the completion log, retrains, hot-swaps.

Replicas share one model through Redis: the replica that retrains (under a Redis lock, so only one
trains at a time) publishes the model's bytes with a new version number, and every replica adopts
a published version newer than its own on its next poll. Versions are "r<N>" for retrained models;
the model a replica started from is "base".
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aredis

from ecoserve.completion_log import CompletionLog, LoggedCompletion, decode_messages
from ecoserve.core.request import Prediction
from ecoserve.predictor import Completion, PredictorError, RLPredictor
from ecoserve.predictor.chat import Request, as_chat
from ecoserve.predictor.model import RLModel
from services.predictor.live_error import LiveError

log = logging.getLogger("ecoserve.predictor")
T = TypeVar("T")
BASE_VERSION = "base"


def warm_up(model: RLPredictor | RLModel) -> None:
    """Predict one prompt. A model's first prediction builds its forest from the boosters (0.1 s on
    an idle core, several times that under load), longer than the gateway waits for a prediction
    (0.25 s): done before the model serves, so no request pays for it."""
    if isinstance(model, RLPredictor):
        model.predict(["warm-up"], [None])
    else:
        model.predict_tokens(["warm-up"], [None])


def as_completion(c: LoggedCompletion) -> Completion:
    """A log entry as the predictor learns from it: the chat when the gateway logged one."""
    return Completion(c.prompt, c.response_tokens, c.max_tokens or None,
                      messages=as_chat([{"role": r, "content": t} for r, t in decode_messages(c.messages)]),
                      served_model=c.served_model, prompt_tokens=c.prompt_tokens or None)


async def _unless_stopped(stop: asyncio.Event, coro: Awaitable[T]) -> T | None:
    """`coro`'s result, or None (and `coro` cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


@dataclass(frozen=True, slots=True)
class LearnerConfig:
    prefix: str = "ecoserve"
    window: int = 20_000  # newest completions kept to train on
    retrain_interval_s: float = 0.0  # 0: retrain only on demand; else also as soon as a drift is seen
    min_new: int = 200  # a scheduled retrain waits for this many new completions
    error_window: int = 1000
    save_path: str | None = None  # also write each retrained model here
    seed: int = 0
    poll_ms: int = 500  # how long one read of the log waits; bounds how late a published model is adopted


@dataclass(frozen=True, slots=True)
class RetrainResult:
    swapped: bool
    version: str
    completions: int
    message: str


class Learner:
    def __init__(self, predictor: RLPredictor, client: aredis.Redis | None, config: LearnerConfig) -> None:
        self.predictor = predictor
        self.client = client
        self.config = config
        self.log = CompletionLog(client, config.prefix) if client is not None else None
        self.version = BASE_VERSION
        self.version_number = 0
        self.live = LiveError(config.error_window)
        self.window: deque[LoggedCompletion] = deque(maxlen=config.window)
        self.seen = 0
        self.new_since_retrain = 0
        self.retrains = 0
        self.last_error = ""
        self._lock = asyncio.Lock()
        self._model_key = f"{config.prefix}:predictor:model"
        self._drifts_at_retrain = 0

    def predict(self, requests: list[Request], max_tokens: list[int | None],
                prompt_tokens: list[int | None] | None = None,
                served_model: list[str] | str = "") -> tuple[list[Prediction], str]:
        """Predictions and the version that made them (read together: a swap may come at any time)."""
        version, predictor = self.version, self.predictor
        return predictor.predict(requests, max_tokens, prompt_tokens=prompt_tokens, served_model=served_model), version

    async def observe(self, entries: list[LoggedCompletion]) -> None:
        """Keep the entries to retrain on, score the served model's live error, and calibrate the
        served model's scale on them (online, per served model; scoring runs off the event loop)."""
        for c in entries:
            self.window.append(c)
            if c.model_version == self.version and c.point > 0:
                self.live.add(c.response_tokens, c.point, c.upper)
        self.seen += len(entries)
        self.new_since_retrain += len(entries)
        if entries:
            await asyncio.to_thread(self.predictor.observe, [as_completion(c) for c in entries])

    def drifted(self) -> bool:
        """The online calibration saw a drift since the last retrain (a retrain is due)."""
        return self.predictor.calibrator.drifts() > self._drifts_at_retrain

    async def follow(self, stop: asyncio.Event) -> None:
        """Read the log, adopt published models, retrain on schedule; until `stop` (a read of the log
        in progress is dropped then; a retrain in progress finishes first)."""
        if self.log is None:
            return
        await self.adopt_published()
        last_id, backlog = await self.log.tail(self.config.window)
        await self.observe(backlog)
        next_retrain = time.monotonic() + self.config.retrain_interval_s
        while not stop.is_set():
            try:
                read = await _unless_stopped(stop, self.log.read_after(last_id, self.config.poll_ms))
                if read is None:
                    break
                last_id, entries = read
                await self.observe(entries)
                await self.adopt_published()
                # on a schedule (0: only on demand), and sooner when the online calibration saw a drift
                scheduled = time.monotonic() >= next_retrain
                if (self.config.retrain_interval_s > 0 and (scheduled or self.drifted())
                        and self.new_since_retrain >= self.config.min_new):
                    result = await self.retrain()
                    log.info("%s retrain: %s", "scheduled" if scheduled else "drift", result.message)
                    next_retrain = time.monotonic() + self.config.retrain_interval_s
            except aredis.RedisError as exc:  # Redis away: keep serving the current model, retry
                log.warning("completion log: %s", exc)
                await asyncio.sleep(1.0)

    async def adopt_published(self) -> bool:
        """Load the model another replica published, if it is newer than ours."""
        assert self.client is not None
        number = await self.client.hget(self._model_key, "version")
        if number is None or int(number) <= self.version_number:
            return False
        data = await self.client.hget(self._model_key, "data")
        if data is None:
            return False
        self._swap(await asyncio.to_thread(_load_bytes, data), int(number))
        log.info("adopted published model %s", self.version)
        return True

    async def retrain(self) -> RetrainResult:
        """Train on the completions in the window; publish and serve the result if training succeeds."""
        if self.client is None:
            return RetrainResult(False, self.version, 0, "no completion log: the service runs without Redis")
        async with self._lock:
            lock_key, token = f"{self.config.prefix}:predictor:lock", secrets.token_hex(8)
            if not await self.client.set(lock_key, token, nx=True, px=600_000):
                return RetrainResult(False, self.version, 0, "another replica is retraining")
            try:
                return await self._retrain_locked()
            finally:
                if await self.client.get(lock_key) == token.encode():
                    await self.client.delete(lock_key)

    async def _retrain_locked(self) -> RetrainResult:
        assert self.client is not None
        data = [as_completion(c) for c in self.window]
        self.new_since_retrain = 0
        try:
            model = await asyncio.to_thread(self.predictor.retrain, data, seed=self.config.seed, swap=False)
            await asyncio.to_thread(warm_up, model)
            blob = await asyncio.to_thread(_model_bytes, model)
        except PredictorError as exc:
            self.last_error = str(exc)
            return RetrainResult(False, self.version, len(data), self.last_error)
        except Exception as exc:  # noqa: BLE001 - a failed training must never take the service down
            log.exception("retrain failed")
            self.last_error = f"{type(exc).__name__}: {exc}"
            return RetrainResult(False, self.version, len(data), self.last_error)
        number = int(await self.client.incr(f"{self.config.prefix}:predictor:model_seq"))
        await self.client.hset(self._model_key, mapping={"version": number, "data": blob})
        self._swap(model, number)
        self.last_error = ""
        if self.config.save_path:
            await asyncio.to_thread(model.save, self.config.save_path)
        info = model.info
        return RetrainResult(True, self.version, len(data),
                             f"{self.version}: trained on {info.get('n_train')} completions, "
                             f"{info.get('n_calibration')} calibrating, {info.get('n_test_held_out')} held out")

    def _swap(self, model: object, number: int) -> None:
        """Serve `model`, its online calibration started from the completions in the window."""
        self.predictor.swap(model, [as_completion(c) for c in self.window])  # type: ignore[arg-type]
        self._drifts_at_retrain = self.predictor.calibrator.drifts()
        self.version_number, self.version = number, f"r{number}"
        self.live.reset()
        self.retrains += 1


def _model_bytes(model: object) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ecoserve-model-") as tmp:
        path = Path(tmp) / "model.json.gz"
        model.save(path)  # type: ignore[attr-defined]
        return path.read_bytes()


def _load_bytes(data: bytes) -> RLPredictor:
    with tempfile.TemporaryDirectory(prefix="ecoserve-model-") as tmp:
        path = Path(tmp) / "model.json.gz"
        path.write_bytes(data)
        predictor = RLPredictor.load(path)
    warm_up(predictor)
    return predictor
