"""vLLM V0 (v0.4-v0.6 defaults): the generation the EcoServe paper compared against.

No chunked prefill and prefill priority: a step is either all prefills (waiting prompts admitted
FCFS while their blocks fit above a 1% watermark and the token budget allows) or, when no prompt
can be admitted, all decodes; a decode that finds no free block preempts the newest running
request, which is recomputed later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import (
    Policy,
    admit_head,
    crosses_block,
    grow_or_preempt_newest,
)
from ecoserve.core.request import blocks_for

if TYPE_CHECKING:
    from ecoserve.core.scheduler import WorkerScheduler


@dataclass(frozen=True, slots=True)
class VllmV0Config:
    max_num_batched_tokens: int = 4096  # max(max_model_len, 2048); set from the model
    max_num_seqs: int = 256
    watermark: float = 0.01


class VllmV0Policy(Policy):
    name = "vllm-v0"

    def __init__(self, config: VllmV0Config = VllmV0Config()) -> None:
        self.config = config

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        plan = self._prefills(sched)
        return plan if plan else self._decodes(sched)

    def _prefills(self, sched: WorkerScheduler) -> BatchPlan:
        cfg = self.config
        ledger = sched.ledger
        bs = ledger.block_size
        watermark = int(cfg.watermark * ledger.capacity)
        plan = BatchPlan()
        budget = cfg.max_num_batched_tokens
        waiting = sched.waiting
        while waiting and len(sched.running) < cfg.max_num_seqs:
            req = waiting[0]
            n = req.num_tokens
            blocks = blocks_for(n, bs)
            if n > budget or ledger.free - blocks < watermark:
                break
            ledger.allocate(req.id, blocks)
            admit_head(sched, plan, n)
            budget -= n
        return plan

    def _decodes(self, sched: WorkerScheduler) -> BatchPlan:
        ledger = sched.ledger
        bs = ledger.block_size
        plan = BatchPlan()
        running = sched.running
        i = 0
        while i < len(running):
            req = running[i]
            target = req.num_computed + 1
            if crosses_block(req.num_computed, target, bs) and not grow_or_preempt_newest(sched, req, target, plan):
                break
            plan.add(req, 1)
            i += 1
        return plan
