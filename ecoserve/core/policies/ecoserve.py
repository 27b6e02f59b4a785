"""The EcoServe policy (DESIGN section 4), every mechanism behind a switch for ablation.

Per iteration of one worker:
1. Loans whose lender's write frontier is about to reach them are ended: the borrower moves to
   free blocks, or is preempted.
2. Every running generation task (GT) decodes one token inside its reservation; one that overruns
   its reservation is extended from free KV, else from a loan, else the cheapest request to
   recompute is preempted.
3. Prefilled GTs waiting to join the batch are admitted (by RL group, most KV held first) while the
   batch stays within `max_num_seqs` and the iteration-time target.
   A GT joins with KV reserved for its predicted response length, taken from free blocks or, if
   it will be done in time, borrowed from a running GT's reserved-but-unwritten tail (KVC
   pipelining).
4. The rest of the iteration's compute, sized by the cost model to keep the iteration within the
   TPOT target, goes to prompt tasks (PTs): continuing chunks first, then new prompts by least
   slack. A prompt needs KV for itself only, and only from blocks that waiting GTs are not owed.

Prefilling before the RL reservation is granted moves queueing from before the first token (a
tight TTFT budget) to after it (TPOT slack, usually large). Should waiting GTs ever hold all KV
with nothing running to free any, the one holding least is preempted.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import Policy, crosses_block
from ecoserve.core.policies.budget import IterationBudget
from ecoserve.core.request import Phase, Request, blocks_for

if TYPE_CHECKING:
    from ecoserve.core.cost_model import CostModel
    from ecoserve.core.scheduler import WorkerScheduler

Reservation = Literal["upper", "point", "oracle", "none"]


@dataclass(frozen=True, slots=True)
class EcoServeConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192  # hard cap on tokens per iteration
    iteration_target: float = 0.09  # seconds per iteration the budget aims at (0: no time budget)
    # RL reserved when a GT joins: the point prediction (overruns are extended), the predictor's
    # upper quantile, the true length, or nothing (KV on demand).
    reservation: Reservation = "point"
    reservation_scale: float = 1.0  # share of the predicted RL reserved up front (oracle excepted)
    pipelining: bool = True  # lend reserved-but-unwritten KV to requests that finish in time
    rl_groups: bool = True  # admit waiting GTs by RL bucket
    kv_priority: bool = True  # waiting GTs holding more KV go first
    single_queue: bool = False  # one FCFS queue: prefilled requests join at once, no lookahead
    extension_fraction: float = 0.25  # overrun extension, as a share of the predicted RL
    loan_margin: float = 1.25  # a loan needs the lender's frontier this many times farther away
    lookahead: int = 16  # waiting prompts tried past one that does not fit
    loan_tries: int = 4  # failed loan searches per iteration (each scans the batch)
    slo_order: bool = True  # prompts past their TTFT deadline wait behind those still on time


class EcoServePolicy(Policy):
    name = "ecoserve"

    def __init__(self, cost_model: CostModel, config: EcoServeConfig = EcoServeConfig()) -> None:
        self.cost = cost_model
        self.config = config
        self.budget = IterationBudget(cost_model, config.iteration_target) if config.iteration_target else None

    # --- queue order -------------------------------------------------------------------------

    def _pt_key(self, req: Request) -> float:
        """Least slack first: TTFT deadline less the prompt's own compute (a static key)."""
        if self.config.single_queue:
            return req.arrival
        p = req.prompt_len
        return req.arrival + req.slo.ttft - self.cost.iteration_time(1, p, p * p, 0, 0, 0)

    def _pt_order(self, waiting: list[Request], now: float) -> list[Request]:
        """Prompts that can still meet their TTFT first (least slack first), then the late ones.

        A prompt already past its deadline gains nothing from going first, while the KV and
        compute it takes can make an on-time one late too.
        """
        if self.config.single_queue or not self.config.slo_order:
            return waiting[: self.config.lookahead + 64]
        late = bisect_right(waiting, now, key=self._pt_key)
        window = self.config.lookahead + 64
        return waiting[late : late + window] + waiting[: min(late, window)]

    def enqueue(self, sched: WorkerScheduler, req: Request) -> None:
        insort(sched.waiting, req, key=self._pt_key)

    def requeue_preempted(self, sched: WorkerScheduler, req: Request) -> None:
        if self.config.single_queue or not self.config.kv_priority:
            insort(sched.waiting, req, key=self._pt_key)
        else:
            sched.waiting.insert(0, req)  # it held KV: finishing it frees KV soonest

    def on_prefilled(self, sched: WorkerScheduler, req: Request) -> bool:
        if self.config.single_queue:
            req.phase = Phase.RUNNING
            return False
        req.phase = Phase.WAITING_GT
        sched.gt_queue.append(req)
        return True

    # --- reservation sizes -------------------------------------------------------------------

    def _reserved_rl(self, req: Request) -> int:
        mode = self.config.reservation
        if mode == "oracle":
            return min(max(req.target_len, req.generated + 1), req.max_tokens)
        elif mode == "point":
            rl = req.prediction.point
        elif mode == "upper":
            rl = req.prediction.upper
        else:
            return 0
        rl = math.ceil(rl * self.config.reservation_scale)
        return min(max(rl, req.generated + 1), req.max_tokens)

    def _reservation_blocks(self, req: Request, bs: int) -> int:
        return blocks_for(max(req.num_tokens, req.prompt_len + self._reserved_rl(req)), bs)

    def _admission_blocks(self, req: Request, bs: int) -> int:
        """KV a prompt task needs to start: its prompt, or everything with a single queue."""
        if self.config.single_queue:
            return self._reservation_blocks(req, bs)
        return blocks_for(req.num_tokens, bs)

    # --- the iteration -----------------------------------------------------------------------

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        plan = BatchPlan()
        if sched.ledger.lenders():
            self._reclaim_loans(sched, plan)
        self._decodes(sched, plan)
        if sched.gt_queue:
            self._admit_gts(sched, plan)
        self._prefills(sched, plan, now)
        while not plan and sched.gt_queue:
            # Waiting GTs hold all the KV and nothing runs that could free some.
            victim = min(sched.gt_queue, key=lambda r: sched.ledger.held(r.id))
            sched.preempt(victim)
            plan.preempted.append(victim)
            self._admit_gts(sched, plan)
            self._prefills(sched, plan, now)
        return plan

    def _reclaim_loans(self, sched: WorkerScheduler, plan: BatchPlan) -> None:
        ledger = sched.ledger
        bs = ledger.block_size
        for lender_id in ledger.lenders():
            lender = sched.requests[lender_id]
            acct = ledger.account(lender_id)
            if blocks_for(lender.num_tokens + 1, bs) <= acct.own - acct.lent:
                continue
            for borrower_id in ledger.loans_of(lender_id):
                if ledger.migrate(borrower_id):
                    sched.stats.loan_migrations += 1
                else:
                    borrower = sched.requests[borrower_id]
                    sched.preempt(borrower)
                    plan.preempted.append(borrower)
                    sched.stats.loan_preemptions += 1

    def _decodes(self, sched: WorkerScheduler, plan: BatchPlan) -> None:
        ledger = sched.ledger
        bs = ledger.block_size
        # Block needs first, so that a preemption never removes a request already planned.
        for req in list(sched.running):
            if req.phase is not Phase.RUNNING:
                continue
            target = req.num_computed + 1
            if crosses_block(req.num_computed, target, bs):
                if blocks_for(target, bs) > ledger.room(req.id) and not self._overrun(sched, req, plan):
                    continue
                ledger.write(req.id, target)
        for req in sched.running:
            if req.phase is Phase.RUNNING:
                plan.add(req, 1)

    def _overrun(self, sched: WorkerScheduler, req: Request, plan: BatchPlan) -> bool:
        """Give an overrunning request room for one more block. False if it was preempted."""
        ledger = sched.ledger
        sched.stats.overruns += 1
        req.overruns += 1
        bs = ledger.block_size
        step = 1
        if self.config.reservation != "none":
            step = max(1, blocks_for(math.ceil(self.config.extension_fraction * req.prediction.point), bs))
        while True:
            if ledger.allocate(req.id, step) or ledger.allocate(req.id, 1):
                sched.stats.extensions += 1
                return True
            if self.config.pipelining and self._borrow(sched, req, 1, duration=bs):
                return True
            victim = self._victim(sched, req)
            sched.preempt(victim)
            plan.preempted.append(victim)
            if victim is req:
                return False

    def _victim(self, sched: WorkerScheduler, overrunner: Request) -> Request:
        """The batch member that is cheapest to recompute (least KV held), newest on ties."""
        ledger = sched.ledger
        return min(
            (r for r in sched.running if r.phase in (Phase.RUNNING, Phase.PREFILLING)),
            key=lambda r: (ledger.held(r.id), -r.admitted_seq),
            default=overrunner,
        )

    def _admit_gts(self, sched: WorkerScheduler, plan: BatchPlan) -> None:
        cfg = self.config
        ledger = sched.ledger
        queue = sched.gt_queue
        if cfg.kv_priority:
            queue.sort(key=lambda r: -ledger.held(r.id))
        groups: list[list[Request]]
        if cfg.rl_groups:
            by_bucket: dict[int, list[Request]] = {}
            for req in queue:
                by_bucket.setdefault(req.prediction.bucket, []).append(req)
            groups = list(by_bucket.values())
        else:
            groups = [[req] for req in queue]
        seats = cfg.max_num_seqs - len(sched.running)
        admitted: set[int] = set()
        loan_tries = cfg.loan_tries
        for group in groups:
            if seats <= 0:
                break
            take = group[:seats]
            if cfg.iteration_target and plan.num_decodes + plan.num_prefills > 0:
                ctx = plan.decode_context + sum(r.num_tokens for r in take)
                t = self.cost.iteration_time(0, 0, 0, 0, plan.num_decodes + len(take), ctx)
                if t > cfg.iteration_target:
                    break
            for req in take:
                # Joining never preempts anyone already planned for this iteration.
                if not self._reserve_rl(sched, req, borrow=loan_tries > 0):
                    loan_tries -= cfg.pipelining
                    continue
                target = req.num_computed + 1
                bs = ledger.block_size
                if crosses_block(req.num_computed, target, bs):
                    if blocks_for(target, bs) > ledger.room(req.id) and not ledger.allocate(req.id, 1):
                        continue
                    ledger.write(req.id, target)
                sched.admit(req, Phase.RUNNING)
                plan.add(req, 1)
                admitted.add(req.id)
                seats -= 1
        if admitted:
            sched.gt_queue = [r for r in queue if r.id not in admitted and r.phase is Phase.WAITING_GT]

    def _reserve_rl(self, sched: WorkerScheduler, req: Request, borrow: bool) -> bool:
        """Reserve KV for a GT's predicted response, from free blocks or from a loan."""
        ledger = sched.ledger
        extra = self._reservation_blocks(req, ledger.block_size) - ledger.room(req.id)
        if extra <= 0 or ledger.allocate(req.id, extra):
            return True
        duration = self._reserved_rl(req) - req.generated
        return borrow and self.config.pipelining and self._borrow(sched, req, extra, duration)

    def _gt_demand(self, sched: WorkerScheduler) -> int:
        """Blocks the waiting GTs still need for their reservations."""
        ledger = sched.ledger
        bs = ledger.block_size
        return sum(max(0, self._reservation_blocks(r, bs) - ledger.room(r.id)) for r in sched.gt_queue)

    def _chunk(self, plan: BatchPlan, prefix: int, want: int) -> int:
        """Tokens of a prefill chunk (up to `want`, on `prefix` computed ones) the step has room for."""
        want = min(want, self.config.max_num_batched_tokens - plan.num_tokens)
        if self.budget is None:
            return max(want, 0)
        return self.budget.chunk(plan, prefix, want)

    def _prefills(self, sched: WorkerScheduler, plan: BatchPlan, now: float) -> None:
        cfg = self.config
        ledger = sched.ledger
        bs = ledger.block_size
        for req in sched.running:
            if req.phase is not Phase.PREFILLING:
                continue
            n = self._chunk(plan, req.num_computed, req.pending_tokens)
            if n <= 0:
                return
            target = req.num_computed + n
            missing = blocks_for(target, bs) - ledger.room(req.id)
            if missing > 0 and not ledger.allocate(req.id, missing):
                continue
            ledger.write(req.id, target)
            plan.add(req, n)
        waiting = sched.waiting
        seats = cfg.max_num_seqs - len(sched.running) - len(sched.gt_queue)
        owed = self._gt_demand(sched) if sched.gt_queue else 0
        misses = 0
        for req in self._pt_order(waiting, now):
            if seats <= 0:
                return
            need = self._admission_blocks(req, bs)
            if need > ledger.free - owed:
                misses += 1
                if cfg.single_queue or misses > cfg.lookahead:
                    return
                continue
            n = self._chunk(plan, req.num_computed, req.pending_tokens)
            if n <= 0:
                return
            ledger.allocate(req.id, need)
            waiting.remove(req)
            sched.admit(req)
            ledger.write(req.id, req.num_computed + n)
            plan.add(req, n)
            seats -= 1

    def _borrow(self, sched: WorkerScheduler, borrower: Request, blocks: int, duration: int) -> bool:
        """Lend `blocks` from the running request whose frontier is farthest from its lent tail."""
        ledger = sched.ledger
        bs = ledger.block_size
        if ledger.account(borrower.id).lent:
            return False
        best_id, best_room = -1, 0
        for lender in sched.running:
            if lender.phase is not Phase.RUNNING or lender is borrower:
                continue
            acct = ledger.account(lender.id)
            if acct.borrowed:
                continue
            # Tokens the lender can still write before reaching the slice it would lend.
            room = (acct.own - acct.lent - blocks) * bs - lender.num_tokens
            if room > best_room:
                best_id, best_room = lender.id, room
        if best_id < 0 or best_room < self.config.loan_margin * duration:
            return False
        ledger.lend(best_id, borrower.id, blocks)
        sched.stats.loans += 1
        return True
