"""DistServe: prefill and decode on separate instances, KV shipped between them, FCFS per stage.

The prefill stage batches whole prompts FCFS under a token budget and hands each request off once
its first token is out. The decode stage admits a request only if the blocks for the prompt and
the whole output of everything admitted fit (DistServe's rule); the true output length is used,
which can only flatter DistServe. The KV transfer itself is timed by the simulator's cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import Policy, admit_head
from ecoserve.core.request import Phase, Request, blocks_for

if TYPE_CHECKING:
    from ecoserve.core.scheduler import WorkerScheduler


@dataclass(frozen=True, slots=True)
class DistServeConfig:
    max_num_batched_tokens: int = 4096  # prefill stage, whole prompts
    max_num_seqs: int = 256  # decode stage


class DistServePrefillPolicy(Policy):
    name = "distserve-prefill"

    def __init__(self, config: DistServeConfig = DistServeConfig()) -> None:
        self.config = config

    def on_prefilled(self, sched: WorkerScheduler, req: Request) -> bool:
        req.phase = Phase.WAITING_GT  # ready to hand off; the cluster moves it to a decode instance
        sched.gt_queue.append(req)
        return True

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        ledger = sched.ledger
        plan = BatchPlan()
        budget = self.config.max_num_batched_tokens
        waiting = sched.waiting
        while waiting:
            req = waiting[0]
            n = req.pending_tokens
            if (plan and n > budget) or not ledger.allocate(req.id, blocks_for(req.num_tokens, ledger.block_size)):
                break
            admit_head(sched, plan, n)
            budget -= n
        return plan


class DistServeDecodePolicy(Policy):
    name = "distserve-decode"

    def __init__(self, config: DistServeConfig = DistServeConfig()) -> None:
        self.config = config

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        ledger = sched.ledger
        bs = ledger.block_size
        waiting = sched.waiting
        while waiting and len(sched.running) < self.config.max_num_seqs:
            req = waiting[0]
            if not ledger.allocate(req.id, blocks_for(req.prompt_len + req.target_len, bs)):
                break
            ledger.write(req.id, req.num_computed)
            waiting.pop(0)
            sched.admit(req, Phase.RUNNING)
        plan = BatchPlan()
        for req in sched.running:
            ledger.write(req.id, req.num_computed + 1)
            plan.add(req, 1)
        return plan
