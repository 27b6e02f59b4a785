"""A request's scheduling state, shared by the live scheduler and the simulator.

A request is a token sequence (prompt plus what it generated so far) of which `num_computed`
tokens have KV in the cache. Prefill, chunked prefill, decode and recompute after preemption are
all the same step: compute the tokens not yet computed; when that catches up with the sequence,
one new token is sampled. This is the unified view of vLLM's v1 scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Phase(Enum):
    WAITING_PT = "waiting_pt"  # queued prompt task: nothing computed yet (or preempted)
    PREFILLING = "prefilling"  # admitted, prompt partially computed
    WAITING_GT = "waiting_gt"  # prefilled, first token out, waiting to join the decode batch
    RUNNING = "running"  # decoding one token per iteration
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Slo:
    """Per-request latency targets, in seconds."""

    ttft: float = 2.0
    tpot: float = 0.1


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the RL predictor said about a request: a point estimate, an upper quantile, a bucket."""

    point: int
    upper: int
    bucket: int


@dataclass(eq=False, slots=True)
class Request:
    id: int
    arrival: float
    prompt_len: int
    max_tokens: int
    prediction: Prediction
    slo: Slo = field(default_factory=Slo)
    # True response length; known to the simulator (and oracle policies), None when serving live.
    output_len: int | None = None
    priority: int = 0
    # Chained hashes of the sequence's whole blocks as far as they are known (the prompt's; in a
    # conversation, the reply's too): what prefix caching matches and caches.
    block_hashes: tuple[int, ...] = ()

    phase: Phase = Phase.WAITING_PT
    generated: int = 0
    num_computed: int = 0
    worker: int | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    finish_reason: str | None = None
    preemptions: int = 0
    overruns: int = 0
    admitted_seq: int = -1  # admission order on its worker, for newest-first preemption
    token_times: list[float] = field(default_factory=list)  # when each output token was sampled

    @property
    def num_tokens(self) -> int:
        """Prompt plus generated tokens: the sequence whose KV the request needs."""
        return self.prompt_len + self.generated

    @property
    def pending_tokens(self) -> int:
        """Tokens still to compute before the next token can be sampled."""
        return self.num_tokens - self.num_computed

    @property
    def target_len(self) -> int:
        """Tokens this request will generate if it runs to completion (max_tokens caps it)."""
        if self.output_len is None:
            return self.max_tokens
        return min(self.output_len, self.max_tokens)

    def ttft_deadline(self) -> float:
        return self.arrival + self.slo.ttft

    def is_done(self) -> bool:
        return self.generated >= self.target_len


def blocks_for(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size) if tokens > 0 else 0


__all__ = ["Phase", "Slo", "Prediction", "Request", "blocks_for"]
