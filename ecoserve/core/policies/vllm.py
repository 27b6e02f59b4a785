"""vLLM V1 scheduling semantics (vllm/v1/core/sched/scheduler.py), modelled step by step.

Running requests first, in admission order, each taking its pending tokens (a decode, or the next
chunk of a prompt) under the step's token budget; blocks are allocated on demand; when one cannot
be had the newest running request is preempted (KV freed, progress reset, back to the head of the
waiting queue). Then, unless the step preempted, waiting requests are admitted FCFS while the whole
prompt fits in free blocks above the watermark; admission stops at the first misfit.
"""

from __future__ import annotations

import itertools
from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import (
    Policy,
    admit_head,
    cached_prefix,
    crosses_block,
    grow_or_preempt_newest,
    start_on_prefix,
    undo_prefix,
)
from ecoserve.core.policies.budget import IterationBudget
from ecoserve.core.request import Request, blocks_for

if TYPE_CHECKING:
    from ecoserve.core.cost_model import CostModel
    from ecoserve.core.scheduler import WorkerScheduler


@dataclass(frozen=True, slots=True)
class VllmConfig:
    max_num_batched_tokens: int = 2048  # OpenAI server default on A100-class GPUs (8192 on H100)
    max_num_seqs: int = 256
    long_prefill_token_threshold: int = 0  # 0: a chunk is capped only by the budget
    watermark: float = 0.0  # share of blocks kept free when admitting
    reserve_full_isl: bool = True  # admit only if the whole prompt fits in free KV
    # Not vLLM: when set, each step's token budget is also sized by the cost model to keep the
    # iteration within this many seconds, as EcoServe does (the `vllm-budget` comparison).
    iteration_target: float = 0.0
    # "sjf": the waiting queue ordered by predicted output length, shortest first, as vllm-ltr
    # orders it by its predictor's ranking (the `vllm-sjf` comparison); "fcfs" is vLLM's own.
    order: Literal["fcfs", "sjf"] = "fcfs"


class VllmPolicy(Policy):
    name = "vllm"

    def __init__(self, config: VllmConfig = VllmConfig(), cost_model: CostModel | None = None) -> None:
        if config.iteration_target and cost_model is None:
            raise ValueError("an iteration-time budget needs a cost model")
        self.config = config
        self.budget = IterationBudget(cost_model, config.iteration_target) if config.iteration_target else None

    def enqueue(self, sched: WorkerScheduler, req: Request) -> None:
        if self.config.order == "sjf":
            insort(sched.waiting, req, key=_shortest_first)
        else:
            sched.waiting.append(req)

    def requeue_preempted(self, sched: WorkerScheduler, req: Request) -> None:
        if self.config.order == "sjf":
            insort(sched.waiting, req, key=_shortest_first)  # its key puts it at the head
        else:
            sched.waiting.insert(0, req)

    def _tokens(self, req: Request, budget: int, plan: BatchPlan, later: Iterable[Request] = ()) -> int:
        """Tokens `req` computes this step: its pending ones under the token budget and the chunk
        threshold, and, for `vllm-budget`, within the time budget, priced with its prefix and
        with the decodes of `later` (running requests the step adds after it)."""
        n = min(req.pending_tokens, budget)
        if self.config.long_prefill_token_threshold:
            n = min(n, self.config.long_prefill_token_threshold)
        if self.budget is not None and req.pending_tokens > 1:
            decodes = [r.num_tokens for r in later if r.pending_tokens == 1]
            n = self.budget.chunk(plan, req.num_computed, n, (len(decodes), sum(decodes)))
        return n

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        cfg = self.config
        ledger = sched.ledger
        bs = ledger.block_size
        plan = BatchPlan()
        running = sched.running
        budget = cfg.max_num_batched_tokens

        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            i += 1
            n = self._tokens(req, budget, plan, itertools.islice(running, i, None))
            if n == 0:
                continue  # no time left for this chunk; vLLM skips a request given no tokens
            target = req.num_computed + n
            if crosses_block(req.num_computed, target, bs) and not grow_or_preempt_newest(sched, req, target, plan):
                break
            plan.add(req, n)
            budget -= n

        if plan.preempted:
            return plan  # no admissions in a step that preempted
        watermark = int(cfg.watermark * ledger.capacity)
        waiting = sched.waiting
        while waiting and budget > 0 and len(running) < cfg.max_num_seqs:
            req = waiting[0]
            hit = cached_prefix(sched, req)
            whole = blocks_for(req.num_tokens, bs) - hit  # scheduler_reserve_full_isl: the whole prompt
            if cfg.reserve_full_isl and whole > ledger.free - watermark:
                break
            matched = start_on_prefix(sched, req, hit)
            n = self._tokens(req, budget, plan)
            first = blocks_for(req.num_computed + n, bs) - matched
            if n == 0 or (not cfg.reserve_full_isl and first > ledger.free - watermark) or not ledger.allocate(req.id, first):
                undo_prefix(sched, req)
                break
            admit_head(sched, plan, n)
            budget -= n
        return plan


def _shortest_first(req: Request) -> tuple[int, int, float]:
    """Preempted requests first (vLLM's head of the queue), then by predicted length."""
    return (0 if req.preemptions else 1), req.prediction.point, req.arrival
