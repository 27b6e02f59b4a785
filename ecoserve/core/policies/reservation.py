"""The paper's KV mechanism, kept as an admission mode of the EcoServe policy: a generation task
reserves KV for its predicted response length when it joins the batch, and KV reserved but not
yet written is lent to requests that will give it back before the lender's frontier arrives
(KVC pipelining). Measured, reserving costs capacity under KV pressure (docs/results.md); the
default admits by forecast instead (forecast.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ecoserve.core.plan import BatchPlan
from ecoserve.core.request import Phase, Request, blocks_for

if TYPE_CHECKING:
    from ecoserve.core.scheduler import WorkerScheduler

Reservation = Literal["point", "upper"]


@dataclass(frozen=True, slots=True)
class Reservations:
    mode: Reservation  # the point prediction (overruns are extended) or the upper quantile
    scale: float  # share of the predicted length reserved up front
    pipelining: bool  # lend reserved-but-unwritten KV
    loan_margin: float  # a loan needs the lender's frontier this many times farther away
    point_of: Callable[[Request], int]  # the predicted length (or the true one, for the oracle)

    def reserved_rl(self, req: Request) -> int:
        rl = self.point_of(req) if self.mode == "point" else max(req.prediction.upper, self.point_of(req))
        rl = math.ceil(rl * self.scale)
        return min(max(rl, req.generated + 1), req.max_tokens)

    def blocks(self, req: Request, bs: int) -> int:
        """KV a request holds once its reservation is granted."""
        return blocks_for(max(req.num_tokens, req.prompt_len + self.reserved_rl(req)), bs)

    def owed(self, sched: WorkerScheduler) -> int:
        """Blocks the waiting GTs still need for their reservations."""
        ledger = sched.ledger
        bs = ledger.block_size
        return sum(max(0, self.blocks(r, bs) - ledger.room(r.id)) for r in sched.gt_queue)

    def reserve(self, sched: WorkerScheduler, req: Request, borrow: bool) -> bool:
        """Reserve KV for a GT's predicted response, from free blocks or from a loan."""
        ledger = sched.ledger
        extra = self.blocks(req, ledger.block_size) - ledger.room(req.id)
        if extra <= 0 or ledger.allocate(req.id, extra):
            return True
        duration = self.reserved_rl(req) - req.generated
        return borrow and self.pipelining and self.borrow(sched, req, extra, duration)

    def borrow(self, sched: WorkerScheduler, borrower: Request, blocks: int, duration: int) -> bool:
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
        if best_id < 0 or best_room < self.loan_margin * duration:
            return False
        ledger.lend(best_id, borrower.id, blocks)
        sched.stats.loans += 1
        return True

    def reclaim_loans(self, sched: WorkerScheduler, plan: BatchPlan) -> None:
        """End loans whose lender's frontier is about to reach them: the borrower moves to free
        blocks, or is preempted."""
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
