"""The policy interface: one plan per worker iteration from the queues, the ledger and the clock.

A policy is pure: it reads and rearranges the worker's queues and ledger and returns a BatchPlan.
It does no I/O, so the live scheduler and the simulator run the very same objects.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from ecoserve.core.plan import BatchPlan
from ecoserve.core.request import Phase, Request, blocks_for

if TYPE_CHECKING:
    from ecoserve.core.scheduler import WorkerScheduler


class Policy(ABC):
    name: str = "policy"
    prefix_caching: bool = False  # reuse cached prefix blocks (vLLM V1's automatic prefix caching)

    def enqueue(self, sched: WorkerScheduler, req: Request) -> None:
        """A new request arrives: FCFS by default."""
        sched.waiting.append(req)

    def requeue_preempted(self, sched: WorkerScheduler, req: Request) -> None:
        """A preempted request goes back to the head of the waiting queue (vLLM's rule)."""
        sched.waiting.insert(0, req)

    def on_prefilled(self, sched: WorkerScheduler, req: Request) -> bool:
        """The prompt is done and the first token sampled. Returns True if it left the batch."""
        req.phase = Phase.RUNNING
        return False

    @abstractmethod
    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        """Plan the next iteration, updating queues and ledger for what it admits or preempts."""


def crosses_block(computed: int, target: int, block_size: int) -> bool:
    """Whether writing KV up to `target` tokens needs a block beyond those holding `computed`."""
    return -(-target // block_size) > -(-computed // block_size)


def grow_or_preempt_newest(sched: WorkerScheduler, req: Request, target: int, plan: BatchPlan) -> bool:
    """Give `req` blocks on demand for `target` tokens, preempting the newest running request
    until they fit (vLLM's rule). False if `req` itself was the one preempted."""
    ledger = sched.ledger
    while not ledger.allocate(req.id, max(0, blocks_for(target, ledger.block_size) - ledger.room(req.id))):
        victim = sched.running[-1]
        sched.preempt(victim)
        plan.preempted.append(victim)
        if victim is req:
            return False
    ledger.write(req.id, target)
    return True


def admit_head(sched: WorkerScheduler, plan: BatchPlan, num_tokens: int) -> None:
    """Admit the head of the waiting queue, whose blocks are already allocated, computing
    `num_tokens` of it in this iteration."""
    req = sched.waiting.pop(0)
    sched.ledger.write(req.id, req.num_computed + num_tokens)
    sched.admit(req)
    plan.add(req, num_tokens)


def cached_prefix(sched: WorkerScheduler, req: Request) -> int:
    """Blocks of `req`'s sequence this worker has cached, for a request with nothing computed
    yet; at least one token is always left to compute, as vLLM leaves it, to sample from."""
    if not sched.policy.prefix_caching or req.num_computed or not req.block_hashes:
        return 0
    bs = sched.ledger.block_size
    usable = req.block_hashes[: (req.num_tokens - 1) // bs]
    return sched.ledger.cached_prefix(usable)


def start_on_prefix(sched: WorkerScheduler, req: Request, blocks: int) -> int:
    """Start `req` on its cached prefix (`blocks` from cached_prefix): the blocks become its shared,
    computed KV. Returns how many were matched (fewer if some were evicted since the look); the
    lookup counts toward the worker's hit rate."""
    if not sched.policy.prefix_caching or req.num_computed or not req.block_hashes:
        return 0
    bs = sched.ledger.block_size
    usable = req.block_hashes[: (req.num_tokens - 1) // bs]
    matched = sched.ledger.match(req.id, usable[:blocks]) if blocks else 0
    sched.ledger.prefix.count_lookup(len(usable), matched)
    req.num_computed = matched * bs
    return matched


def undo_prefix(sched: WorkerScheduler, req: Request) -> None:
    """The request was not admitted after all: give its cached prefix back."""
    if req.num_computed:
        sched.ledger.release(req.id)
        req.num_computed = 0
