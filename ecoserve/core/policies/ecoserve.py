"""The EcoServe policy (DESIGN section 4), every mechanism behind a switch for ablation.

Per iteration of one worker:
1. (Reservation admission only) loans whose lender's frontier is about to reach them end.
2. Every running generation task (GT) decodes one token. One that needs a block it does not have
   gets it from free KV, else (reservations) from a loan, else the request cheapest to recompute
   (least KV held; on ties the one with most TPOT slack) is preempted.
3. Prefilled GTs waiting to join the batch are admitted in order (or by RL group, most KV held
   first, as switches) while the batch stays within `max_num_seqs` and the iteration-time target.
4. The rest of the iteration's compute, sized by the cost model to keep the iteration within the
   TPOT target, goes to prompt tasks (PTs): continuing chunks first, then waiting prompts in the
   queue order (ordering.py: least predicted remaining work first by default). A prompt that can
   no longer meet its TTFT deadline is refused with a retryable error (`overload="shed"`) or
   waits behind those still on time (`"yield"`). A prompt is admitted while the KV forecast of
   the batch with it stays within the cache at the overflow probability (forecast.py), or, with
   `admission="reservation"`, while its own prompt fits in blocks the waiting GTs are not owed
   (they reserve their predicted length when they join; reservation.py).

Should waiting GTs ever hold all KV with nothing running to free any, the one holding least is
preempted.
"""

from __future__ import annotations

import math
from bisect import insort
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import Policy, cached_prefix, crosses_block, start_on_prefix, undo_prefix
from ecoserve.core.policies.budget import IterationBudget
from ecoserve.core.policies.forecast import KvForecast, LengthForecast
from ecoserve.core.policies.ordering import OrderName, Overload, QueueOrder
from ecoserve.core.policies.reservation import Reservation, Reservations
from ecoserve.core.request import Phase, Request, blocks_for

if TYPE_CHECKING:
    from ecoserve.core.cost_model import CostModel
    from ecoserve.core.scheduler import WorkerScheduler

Admission = Literal["forecast", "reservation", "on-demand"]
Lengths = Literal["predicted", "oracle"]


@dataclass(frozen=True, slots=True)
class EcoServeConfig:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192  # hard cap on tokens per iteration
    iteration_target: float = 0.09  # seconds per iteration the budget aims at (0: no time budget)
    order: OrderName = "work"  # the waiting prompts' order (ordering.py)
    overload: Overload = "shed"  # what a prompt that can no longer be on time does
    # KV admission: by forecast of the batch's occupancy, by the paper's reservation of the
    # predicted length when a GT joins, or none (KV on demand, preempting when it runs out).
    admission: Admission = "forecast"
    overflow_probability: float = 0.05  # forecast admission: accepted chance of running out of KV
    lengths: Lengths = "predicted"  # "oracle": the true lengths (simulation only)
    reservation: Reservation = "point"  # reservation admission: point prediction or upper quantile
    reservation_scale: float = 1.0  # reservation admission: share of the length reserved up front
    pipelining: bool = True  # reservation admission: lend reserved-but-unwritten KV
    rl_groups: bool = False  # admit waiting GTs by RL bucket (measured: no gain, docs/results.md)
    kv_priority: bool = False  # waiting GTs holding more KV go first (measured: no gain)
    single_queue: bool = False  # no GT queue: prefilled requests join at once, no lookahead
    priority: bool = True  # higher Request.priority goes first
    # Seconds an iteration may grow to when a waiting prompt is at risk of its TTFT deadline and
    # every decode is ahead of its TPOT schedule (0: the iteration target always holds).
    deadline_budget: float = 0.0
    extension_fraction: float = 0.25  # reservation overrun extension, a share of the prediction
    loan_margin: float = 1.25  # a loan needs the lender's frontier this many times farther away
    lookahead: int = 16  # waiting prompts tried past one that does not fit
    loan_tries: int = 4  # failed loan searches per iteration (each scans the batch)


class EcoServePolicy(Policy):
    name = "ecoserve"

    def __init__(
        self, cost_model: CostModel, config: EcoServeConfig = EcoServeConfig(), lengths: LengthForecast | None = None
    ) -> None:
        self.cost = cost_model
        self.config = config
        oracle = config.lengths == "oracle"
        # Without a measured error distribution the prediction is taken at its word.
        self.lengths = LengthForecast.exact() if oracle or lengths is None else lengths
        self.point_of = _true_length if oracle else _predicted_length
        self.order = QueueOrder(config.order, cost_model, config.iteration_target or 0.05, self.point_of, config.priority)
        self.budget = IterationBudget(cost_model, config.iteration_target) if config.iteration_target else None
        self.reservations = None
        if config.admission == "reservation":
            self.reservations = Reservations(
                config.reservation, config.reservation_scale, config.pipelining, config.loan_margin, self.point_of
            )

    # --- queues ------------------------------------------------------------------------------

    def _insert(self, sched: WorkerScheduler, req: Request) -> None:
        capacity = sched.ledger.capacity * sched.ledger.block_size
        insort(sched.waiting, req, key=lambda r: self.order.key(r, capacity))

    def enqueue(self, sched: WorkerScheduler, req: Request) -> None:
        self._insert(sched, req)

    def requeue_preempted(self, sched: WorkerScheduler, req: Request) -> None:
        self._insert(sched, req)  # the order puts requests that already produced tokens first

    def on_prefilled(self, sched: WorkerScheduler, req: Request) -> bool:
        if self.config.single_queue:
            req.phase = Phase.RUNNING
            return False
        req.phase = Phase.WAITING_GT
        sched.gt_queue.append(req)
        return True

    # --- the iteration -----------------------------------------------------------------------

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        plan = BatchPlan()
        if self.reservations is not None and sched.ledger.lenders():
            self.reservations.reclaim_loans(sched, plan)
        self._decodes(sched, plan, now)
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

    def _decodes(self, sched: WorkerScheduler, plan: BatchPlan, now: float) -> None:
        ledger = sched.ledger
        bs = ledger.block_size
        # Block needs first, so that a preemption never removes a request already planned.
        for req in list(sched.running):
            if req.phase is not Phase.RUNNING:
                continue
            target = req.num_computed + 1
            if crosses_block(req.num_computed, target, bs):
                if blocks_for(target, bs) > ledger.room(req.id) and not self._grow(sched, req, plan, now):
                    continue
                ledger.write(req.id, target)
        for req in sched.running:
            if req.phase is Phase.RUNNING:
                plan.add(req, 1)

    def _grow(self, sched: WorkerScheduler, req: Request, plan: BatchPlan, now: float) -> bool:
        """Give a request room for one more block. False if it was preempted."""
        ledger = sched.ledger
        step = 1
        if self.reservations is not None:  # it outgrew its reservation
            sched.stats.overruns += 1
            req.overruns += 1
            step = max(1, blocks_for(math.ceil(self.config.extension_fraction * self.point_of(req)), ledger.block_size))
        while True:
            if ledger.allocate(req.id, step) or ledger.allocate(req.id, 1):
                sched.stats.extensions += self.reservations is not None
                return True
            if self.reservations is not None and self.reservations.pipelining:
                if self.reservations.borrow(sched, req, 1, duration=ledger.block_size):
                    return True
            victim = self._victim(sched, req, now)
            sched.preempt(victim)
            plan.preempted.append(victim)
            if victim is req:
                return False

    def _victim(self, sched: WorkerScheduler, grower: Request, now: float) -> Request:
        """The batch member cheapest to recompute (least KV held); on ties, the one most ahead of
        its TPOT schedule, then the newest."""
        ledger = sched.ledger

        def slack(r: Request) -> float:
            return (r.first_token_time or now) + r.slo.tpot * r.generated - now

        return min(
            (r for r in sched.running if r.phase in (Phase.RUNNING, Phase.PREFILLING)),
            key=lambda r: (ledger.held(r.id), -slack(r), -r.admitted_seq),
            default=grower,
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
                if self.reservations is not None and not self.reservations.reserve(sched, req, borrow=loan_tries > 0):
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

    def _chunk(self, budget: IterationBudget | None, plan: BatchPlan, prefix: int, want: int) -> int:
        """Tokens of a prefill chunk (up to `want`, on `prefix` computed ones) the step has room for."""
        want = min(want, self.config.max_num_batched_tokens - plan.num_tokens)
        if budget is None:
            return max(want, 0)
        return budget.chunk(plan, prefix, want)

    def _admission_blocks(self, req: Request, bs: int) -> int:
        """KV a prompt task needs to start: its prompt, or its reservation with a single queue."""
        if self.config.single_queue and self.reservations is not None:
            return self.reservations.blocks(req, bs)
        return blocks_for(req.num_tokens, bs)

    def _prefills(self, sched: WorkerScheduler, plan: BatchPlan, now: float) -> None:
        cfg = self.config
        ledger = sched.ledger
        bs = ledger.block_size
        budget = self._prompt_budget(sched, now)
        for req in sched.running:
            if req.phase is not Phase.PREFILLING:
                continue
            n = self._chunk(budget, plan, req.num_computed, req.pending_tokens)
            if n <= 0:
                return
            target = req.num_computed + n
            missing = blocks_for(target, bs) - ledger.room(req.id)
            if missing > 0 and not ledger.allocate(req.id, missing):
                continue
            ledger.write(req.id, target)
            plan.add(req, n)
        window = cfg.lookahead + 64
        candidates, late = self.order.split(sched.waiting, now, cfg.overload, window)
        for req in late:
            sched.abort(req.id, now, "refused")
            plan.refused.append(req)
        forecast: KvForecast | None = None  # built for the first prompt that needs it
        seats = cfg.max_num_seqs - len(sched.running) - len(sched.gt_queue)
        owed = self.reservations.owed(sched) if self.reservations is not None and sched.gt_queue else 0
        misses = 0
        for req in candidates:
            if seats <= 0:
                return
            hit = cached_prefix(sched, req)
            need = self._admission_blocks(req, bs) - hit
            gated = cfg.admission == "forecast" and (plan or sched.running or sched.gt_queue)
            if gated and forecast is None:
                holders = [*sched.running, *sched.gt_queue]
                forecast = KvForecast.of(holders, self.lengths, ledger.capacity, bs, cfg.overflow_probability,
                                         self.point_of)
            if need > ledger.free - owed or (gated and not forecast.admits(req)):  # type: ignore[union-attr]
                misses += 1
                if cfg.single_queue or misses > cfg.lookahead:
                    return
                continue
            matched = start_on_prefix(sched, req, hit)
            n = self._chunk(budget, plan, req.num_computed, req.pending_tokens)
            if n <= 0 or not ledger.allocate(req.id, self._admission_blocks(req, bs) - matched):
                undo_prefix(sched, req)
                return
            sched.waiting.remove(req)
            sched.admit(req)
            ledger.write(req.id, req.num_computed + n)
            plan.add(req, n)
            if forecast is not None:
                forecast.add(req)
            seats -= 1

    def _prompt_budget(self, sched: WorkerScheduler, now: float) -> IterationBudget | None:
        """The iteration budget for prompt chunks: the target, or (deadline_budget) longer while a
        waiting prompt risks its TTFT deadline and every decode is ahead of its TPOT schedule."""
        cfg, budget = self.config, self.budget
        if not cfg.deadline_budget or budget is None:
            return budget
        slack = min(
            ((r.first_token_time or now) + r.slo.tpot * r.generated - now for r in sched.running if r.generated),
            default=math.inf,
        )
        if slack <= 0:
            return budget
        # At risk: chunked at the target, its prefill would not end before its deadline.
        window = sched.waiting[: cfg.lookahead]
        at_risk = any(
            not self.order.late(r, now)
            and now + budget.target * math.ceil(self.order.prefill_seconds(r) / budget.target) > r.arrival + r.slo.ttft
            for r in window
        )
        return replace(budget, target=min(cfg.deadline_budget, budget.target + slack)) if at_risk else budget


def _predicted_length(req: Request) -> int:
    return max(req.prediction.point, 1)


def _true_length(req: Request) -> int:
    return max(req.target_len, req.generated + 1)
