"""A request being served: the core's scheduling state plus its tokens and its subscribers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ecoserve.core.prefix_cache import block_hashes
from ecoserve.core.request import Phase, Prediction, Request, Slo
from ecoserve.core.rl_buckets import rl_bucket
from ecoserve.engine import SamplingParams
from ecoserve.proto import common_pb2, scheduler_pb2


class InvalidRequest(ValueError):
    """A submission the scheduler refuses (INVALID_ARGUMENT)."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_prompt_tokens: int = 32768
    max_tokens: int = 16384
    default_slo: Slo = field(default_factory=Slo)


@dataclass(eq=False, slots=True)
class LiveRequest:
    core: Request
    prompt: list[int]
    params: common_pb2.SamplingParams
    submit: bytes  # the SubmitRequest as received: what Redis keeps to reload the request
    output: list[int] = field(default_factory=list)
    stored: int = 0  # output tokens in Redis: the only ones clients may see
    finish_reason: str | None = None  # decided (set with the iteration that ends it)
    closed: bool = False  # the finish is in Redis: streams end
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> int:
        return self.core.id

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def token_slice(self, start: int, n: int) -> list[int]:
        """Tokens [start, start + n) of the sequence a worker computes: the prompt, then the output."""
        p = len(self.prompt)
        if start + n <= p:
            return self.prompt[start:start + n]
        if start >= p:
            return self.output[start - p:start - p + n]
        return self.prompt[start:] + self.output[:start + n - p]

    def notify(self) -> None:
        """Wake every stream waiting on this request."""
        self._changed.set()
        self._changed = asyncio.Event()

    def changed(self) -> asyncio.Event:
        return self._changed

    def requeue(self) -> None:
        """Forget where it ran: it will be recomputed (prompt + stored output) on whatever worker gets it.

        Tokens Redis never got were never seen by a client; they are generated again, and so is a
        finish that was decided but not stored.
        """
        core = self.core
        del self.output[self.stored:]
        self.finish_reason = None
        core.generated = self.stored
        core.phase, core.num_computed, core.worker = Phase.WAITING_PT, 0, None

    def engine_params(self) -> common_pb2.SamplingParams:
        """Params for a worker meeting this request now: max_tokens counts what is left to generate."""
        params = common_pb2.SamplingParams()
        params.CopyFrom(self.params)
        params.max_tokens = self.core.max_tokens - len(self.output)
        return params


def default_prediction(max_tokens: int) -> Prediction:
    """Until the predictor service exists: assume the request uses all of max_tokens."""
    return Prediction(point=max_tokens, upper=max_tokens, bucket=rl_bucket(max_tokens))


PREFIX_BLOCK = 16  # tokens per block of the prompt hashes: the block size of the engines served


def from_submit(rid: int, msg: scheduler_pb2.SubmitRequest, limits: Limits) -> LiveRequest:
    """Validate a submission and build its live request; InvalidRequest says what is wrong."""
    prompt = list(msg.prompt_token_ids)
    if not prompt:
        raise InvalidRequest("prompt_token_ids is empty")
    if len(prompt) > limits.max_prompt_tokens:
        raise InvalidRequest(f"prompt has {len(prompt)} tokens; the limit is {limits.max_prompt_tokens}")
    if min(prompt) < 0:
        raise InvalidRequest("prompt_token_ids must be >= 0")
    p = msg.params
    max_tokens = p.max_tokens
    if not 1 <= max_tokens <= limits.max_tokens:
        raise InvalidRequest(f"params.max_tokens must be in [1, {limits.max_tokens}], got {max_tokens}")
    try:
        SamplingParams(temperature=p.temperature, top_p=p.top_p or 1.0, top_k=p.top_k, max_tokens=max_tokens)
    except ValueError as exc:
        raise InvalidRequest(f"params: {exc}") from None
    if msg.HasField("prediction"):
        pr = msg.prediction
        if not 0 < pr.point <= pr.upper:
            raise InvalidRequest(f"prediction needs 0 < point <= upper, got {pr.point}, {pr.upper}")
        prediction = Prediction(pr.point, pr.upper, pr.bucket)
    else:
        prediction = default_prediction(max_tokens)
    if msg.slo.ttft_s < 0 or msg.slo.tpot_s < 0:
        raise InvalidRequest("slo targets must be >= 0")
    slo = Slo(msg.slo.ttft_s or limits.default_slo.ttft, msg.slo.tpot_s or limits.default_slo.tpot)
    core = Request(id=rid, arrival=time.time(), prompt_len=len(prompt), max_tokens=max_tokens,
                   prediction=prediction, slo=slo, priority=msg.priority,
                   block_hashes=tuple(block_hashes(prompt, PREFIX_BLOCK)))
    params = common_pb2.SamplingParams()
    params.CopyFrom(p)
    return LiveRequest(core, prompt, params, msg.SerializeToString())
