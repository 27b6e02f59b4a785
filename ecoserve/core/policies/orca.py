"""Orca-style reservation: each request gets KV for prompt + max_tokens when admitted.

Iteration-level batching: every admitted request computes its pending tokens each step (a whole
prompt, then one token at a time); waiting requests are admitted FCFS while their worst-case
reservation fits. Nothing is ever preempted, at the price of reserving for the longest answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import Policy, admit_head
from ecoserve.core.request import blocks_for

if TYPE_CHECKING:
    from ecoserve.core.scheduler import WorkerScheduler


@dataclass(frozen=True, slots=True)
class OrcaConfig:
    max_num_batched_tokens: int = 4096
    max_num_seqs: int = 256


class OrcaPolicy(Policy):
    name = "orca"

    def __init__(self, config: OrcaConfig = OrcaConfig()) -> None:
        self.config = config

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        cfg = self.config
        ledger = sched.ledger
        bs = ledger.block_size
        plan = BatchPlan()
        for req in sched.running:
            n = req.pending_tokens
            ledger.write(req.id, req.num_computed + n)
            plan.add(req, n)
        budget = cfg.max_num_batched_tokens - plan.num_tokens
        waiting = sched.waiting
        while waiting and len(sched.running) < cfg.max_num_seqs:
            req = waiting[0]
            n = req.num_tokens
            if n > budget or not ledger.allocate(req.id, blocks_for(req.prompt_len + req.max_tokens, bs)):
                break
            admit_head(sched, plan, n)
            budget -= n
        return plan
