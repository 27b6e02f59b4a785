"""One worker's scheduling state: queues, KV ledger and the policy that plans each iteration.

The live scheduler service keeps one WorkerScheduler per connected worker; the simulator keeps one
per simulated worker. Both call `schedule` before an iteration and `update` after it, so the same
policy objects decide in both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecoserve.core.kv_ledger import KVLedger
from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import Policy
from ecoserve.core.request import Phase, Request


@dataclass(slots=True)
class SchedulerStats:
    """Counters a policy bumps; every overrun, extension, loan and preemption is counted."""

    preemptions: int = 0
    overruns: int = 0
    extensions: int = 0
    loans: int = 0
    loan_migrations: int = 0
    loan_preemptions: int = 0
    iterations: int = 0


class WorkerScheduler:
    def __init__(self, policy: Policy, ledger: KVLedger, worker_id: int = 0) -> None:
        self.policy = policy
        self.ledger = ledger
        self.worker_id = worker_id
        self.waiting: list[Request] = []  # prompt tasks, in the policy's order
        self.gt_queue: list[Request] = []  # prefilled generation tasks waiting to join the batch
        self.running: list[Request] = []  # in the batch (prefilling or decoding), admission order
        self.requests: dict[int, Request] = {}
        self.stats = SchedulerStats()
        self._admissions = 0

    # --- queries -----------------------------------------------------------------------------

    @property
    def num_unfinished(self) -> int:
        return len(self.requests)

    def has_work(self) -> bool:
        return bool(self.requests)

    def kv_load(self) -> float:
        """Share of KV blocks allocated, for least-loaded dispatch."""
        return self.ledger.used / self.ledger.capacity

    # --- transitions -------------------------------------------------------------------------

    def add_request(self, req: Request) -> None:
        if req.id in self.requests:
            raise ValueError(f"request {req.id} is already on worker {self.worker_id}")
        req.worker = self.worker_id
        req.phase = Phase.WAITING_PT
        self.requests[req.id] = req
        self.policy.enqueue(self, req)

    def admit(self, req: Request, phase: Phase = Phase.PREFILLING) -> None:
        """Put a request into the batch; admission order decides newest-first preemption."""
        req.phase = phase
        req.admitted_seq = self._admissions
        self._admissions += 1
        self.running.append(req)

    def schedule(self, now: float) -> BatchPlan:
        self.stats.iterations += 1
        return self.policy.schedule(self, now)

    def update(self, plan: BatchPlan, now: float, stopped: frozenset[int] = frozenset()) -> list[Request]:
        """Apply a finished iteration: progress, sampled tokens, finishes. Returns finished requests.

        `stopped` holds the ids the engine ended early (EOS or a stop token); the length limit
        (max_tokens, or the true length in simulation) is checked here.
        """
        finished: list[Request] = []
        left_batch = False
        caching = self.policy.prefix_caching
        bs = self.ledger.block_size
        for req, n in plan.items:  # the simulator's innermost loop: attribute reads kept few
            phase = req.phase
            if phase is Phase.FINISHED or phase is Phase.WAITING_PT:
                continue  # aborted or preempted while the iteration ran
            before = req.num_computed
            computed = req.num_computed = before + n
            hashes = req.block_hashes
            if caching and hashes and before // bs < len(hashes) and computed // bs > before // bs:
                self.ledger.commit(req.id, hashes, computed // bs)  # a named prompt block is complete
            if computed < req.prompt_len + req.generated:
                continue  # a prefill chunk that did not reach the end of the sequence
            generated = req.generated = req.generated + 1
            req.token_times.append(now)
            if req.first_token_time is None:
                req.first_token_time = now
            if generated >= req.target_len or req.id in stopped:
                reason = "stop" if req.id in stopped else "length"
                self._finish(req, now, reason)
                finished.append(req)
                left_batch = True
            elif phase is Phase.PREFILLING:
                left_batch |= self.policy.on_prefilled(self, req)
        if left_batch:
            self.running = [r for r in self.running if r.phase in (Phase.RUNNING, Phase.PREFILLING)]
        return finished

    def preempt(self, req: Request) -> None:
        """Free a request's KV and send it back to compute everything again (recompute)."""
        self.ledger.release(req.id)
        if req.phase in (Phase.RUNNING, Phase.PREFILLING):
            self.running.remove(req)
        elif req.phase is Phase.WAITING_GT:
            self.gt_queue.remove(req)
        req.num_computed = 0
        req.phase = Phase.WAITING_PT
        req.preemptions += 1
        self.stats.preemptions += 1
        self.policy.requeue_preempted(self, req)

    def withdraw(self, req: Request) -> None:
        """Take back a queued request that holds no KV here, to serve it on another worker."""
        self.waiting.remove(req)
        del self.requests[req.id]
        req.worker = None

    def detach(self, req: Request) -> None:
        """Hand a prefilled request to another worker (disaggregated serving): free it here."""
        self.gt_queue.remove(req)
        self.ledger.release(req.id)
        del self.requests[req.id]

    def abort(self, rid: int, now: float, reason: str = "abort") -> Request | None:
        """Drop a request (client cancel, worker shutdown). Returns it, or None if unknown."""
        req = self.requests.get(rid)
        if req is None:
            return None
        if req.phase is Phase.WAITING_PT:
            self.waiting.remove(req)
        elif req.phase is Phase.WAITING_GT:
            self.gt_queue.remove(req)
        else:
            self.running.remove(req)
        self._finish(req, now, reason)
        return req

    def _finish(self, req: Request, now: float, reason: str) -> None:
        req.phase = Phase.FINISHED
        req.finish_time = now
        req.finish_reason = reason
        self.ledger.release(req.id)
        del self.requests[req.id]
