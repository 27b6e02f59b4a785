"""Placement across workers: which worker serves a request (DESIGN section 7).

The routers users run in front of vLLM replicas bind a request to a replica when it arrives:

- `round-robin`: a Kubernetes Service.
- `least-loaded`: vLLM's data-parallel balancing: the engine with least 4 x waiting + running
  (vllm/v1/engine/core_client.py), the lowest index on ties.
- `llm-d`: llm-d's endpoint picker with the Gateway API Inference Extension's default profile:
  prefix-cache scorer (weight 3; an approximate index of the prompt blocks routed to each server,
  LRU, at most 31,250 blocks per server, matching at most 256 blocks), queue scorer (weight 1;
  waiting requests, min-max normalized) and KV-cache utilization scorer (weight 1; 1 - usage),
  then the highest score (a seeded random pick among ties).
- `dynamo`: NVIDIA Dynamo's KV router: cost = overlap weight (1.0) x blocks to prefill (prompt
  blocks not cached on the worker, known exactly from its KV events) + the worker's active
  blocks (in use, and those of the requests it routed there not started yet); the lowest cost
  (router temperature 0).
- `least-kv`: least KV in use, then fewest requests (EcoServe's dispatcher before placement).

`ecoserve` binds late, from the one scheduler that holds every worker's ledger: a request waits
in the cell's queue until some worker can start it, and then goes where it would start its
prefill soonest, counting each worker's queued prefill and the prompt blocks it has cached; a
request waiting on a worker that cannot start it moves to one that can. Placement objects are pure
and are shared by the simulator and the live scheduler, like policies.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ecoserve.core.request import Request

if TYPE_CHECKING:
    from ecoserve.core.cost_model import CostModel
    from ecoserve.core.scheduler import WorkerScheduler

ROUTER_NAMES: tuple[str, ...] = ("ecoserve", "round-robin", "least-loaded", "llm-d", "dynamo", "least-kv")


class Placement(ABC):
    name: str = "placement"
    late_binding: bool = False

    @abstractmethod
    def arrive(self, req: Request, workers: Sequence[WorkerScheduler], now: float) -> int | None:
        """The worker to bind a new request to, or None to hold it in the cell's queue."""

    def assign(
        self, pending: list[Request], workers: Sequence[WorkerScheduler], index: int, now: float
    ) -> list[Request]:
        """Late binding: the held requests worker `index` takes as it plans its next iteration."""
        return []


@dataclass(slots=True)
class RoundRobin(Placement):
    name = "round-robin"
    _next: itertools.count = field(default_factory=itertools.count)

    def arrive(self, req: Request, workers: Sequence[WorkerScheduler], now: float) -> int:
        return next(self._next) % len(workers)


class LeastLoaded(Placement):
    name = "least-loaded"

    def arrive(self, req: Request, workers: Sequence[WorkerScheduler], now: float) -> int:
        return min(range(len(workers)), key=lambda i: 4 * len(workers[i].waiting) + len(workers[i].running))


class LeastKv(Placement):
    name = "least-kv"

    def arrive(self, req: Request, workers: Sequence[WorkerScheduler], now: float) -> int:
        return min(range(len(workers)), key=lambda i: (workers[i].kv_load(), workers[i].num_unfinished))


@dataclass(slots=True)
class LlmD(Placement):
    name = "llm-d"
    prefix_weight: float = 3.0
    queue_weight: float = 1.0
    kv_weight: float = 1.0
    lru_blocks: int = 31_250  # lruCapacityPerServer
    max_blocks: int = 256  # maxPrefixBlocksToMatch
    seed: int = 0
    _index: list[OrderedDict[int, None]] = field(default_factory=list)
    _rng: np.random.Generator | None = None

    def arrive(self, req: Request, workers: Sequence[WorkerScheduler], now: float) -> int:
        if not self._index:
            self._index = [OrderedDict() for _ in workers]
            self._rng = np.random.default_rng(self.seed)
        blocks = req.block_hashes[: self.max_blocks]
        queues = [len(w.waiting) for w in workers]
        low, high = min(queues), max(queues)
        scores = []
        for i, w in enumerate(workers):
            matched = 0
            for h in blocks:
                if h not in self._index[i]:
                    break
                matched += 1
            prefix = matched / len(blocks) if blocks else 0.0
            queue = 1.0 if high == low else (high - queues[i]) / (high - low)
            scores.append(self.prefix_weight * prefix + self.queue_weight * queue + self.kv_weight * (1 - w.kv_load()))
        best = max(scores)
        choice = int(self._rng.choice([i for i, s in enumerate(scores) if s == best]))  # type: ignore[union-attr]
        self._remember(choice, blocks)
        return choice

    def _remember(self, i: int, blocks: Sequence[int]) -> None:
        """The approximate index: what was routed where, not what the server kept."""
        index = self._index[i]
        for h in blocks:
            index[h] = None
            index.move_to_end(h)
        while len(index) > self.lru_blocks:
            index.popitem(last=False)


@dataclass(slots=True)
class Dynamo(Placement):
    name = "dynamo"
    overlap_weight: float = 1.0

    def arrive(self, req: Request, workers: Sequence[WorkerScheduler], now: float) -> int:
        bs = workers[0].ledger.block_size
        blocks = -(-req.prompt_len // bs)

        def cost(i: int) -> float:
            w = workers[i]
            prefill = blocks - w.ledger.cached_prefix(req.block_hashes)
            # Active blocks as the router tracks them: in use, and those of requests it routed
            # there that have not started yet.
            active = w.ledger.used + sum(-(-r.num_tokens // bs) for r in w.waiting)
            return self.overlap_weight * prefill + active

        return min(range(len(workers)), key=cost)


@dataclass(slots=True)
class EcoServePlacement(Placement):
    """Late binding on the cell's view of every worker (see the module docstring)."""

    name = "ecoserve"
    late_binding = True
    cost: CostModel | None = None
    window: int = 32  # held requests considered per worker decision
    step: float = 0.09  # prefill seconds a worker may take on at once (EcoServe's iteration target)

    def arrive(self, req: Request, workers: Sequence[WorkerScheduler], now: float) -> None:
        return None

    def _prefills(self, req: Request, workers: Sequence[WorkerScheduler]) -> list[float]:
        """Seconds its uncached prompt would take on each worker, run alone (priced once for
        each distinct cached length: most workers share one)."""
        assert self.cost is not None
        bs = workers[0].ledger.block_size
        hashes = req.block_hashes[: (req.num_tokens - 1) // bs]
        by_hit: dict[int, float] = {}
        seconds: list[float] = []
        for worker in workers:
            hit = worker.ledger.cached_prefix(hashes) if hashes else 0
            t = by_hit.get(hit)
            if t is None:
                cached = hit * bs
                n = req.num_tokens - cached
                t = by_hit[hit] = self.cost.iteration_time(1, n, n * n, n * cached, 0, 0)
            seconds.append(t)
        return seconds

    def _backlog(self, worker: WorkerScheduler) -> float:
        """Prefill seconds already queued on a worker, before a new request could start there."""
        assert self.cost is not None
        return sum(self.cost.iteration_time(1, r.pending_tokens, r.pending_tokens**2, 0, 0, 0) for r in worker.waiting)

    def assign(
        self, pending: list[Request], workers: Sequence[WorkerScheduler], index: int, now: float
    ) -> list[Request]:
        """Worker `index`, about to plan with nothing queued, takes the held requests that would
        start no sooner anywhere else (a worker with more of a prompt's prefix cached may be worth
        its short wait), as many as one iteration's prefill (`step` seconds) can start. Requests
        queued on busy workers that could not start them are held again first."""
        target = workers[index]
        if target.waiting:
            return []  # it has work it has not started: it is not free to take more
        pending[:0] = self._stuck(workers, index)
        backlog = [self._backlog(w) for w in workers]
        taken: list[Request] = []
        for req in list(pending[: self.window]):
            prefill = self._prefills(req, workers)
            here = prefill[index]
            elsewhere = min((backlog[i] + t for i, t in enumerate(prefill) if i != index), default=math.inf)
            if backlog[index] + here > elsewhere or (taken and backlog[index] + here > self.step):
                continue
            pending.remove(req)
            taken.append(req)
            backlog[index] += here
        return taken

    def _stuck(self, workers: Sequence[WorkerScheduler], index: int) -> list[Request]:
        """Requests queued on other workers that planned without starting them (their KV could not
        take them): they hold no KV, so they move for free. Only what fits the free worker moves."""
        room = workers[index].ledger.free
        moved: list[Request] = []
        for i, w in enumerate(workers):
            if i == index or not w.running:
                continue  # an idle worker starts its queue at once
            for req in list(w.waiting):
                need = -(-req.num_tokens // w.ledger.block_size)
                if req.generated == 0 and need <= room:
                    w.withdraw(req)
                    moved.append(req)
                    room -= need
        return sorted(moved, key=lambda r: r.arrival)


def make_placement(name: str, cost: CostModel | None = None, seed: int = 0) -> Placement:
    if name == "ecoserve":
        return EcoServePlacement(cost=cost)
    if name == "round-robin":
        return RoundRobin()
    if name == "least-loaded":
        return LeastLoaded()
    if name == "llm-d":
        return LlmD(seed=seed)
    if name == "dynamo":
        return Dynamo()
    if name == "least-kv":
        return LeastKv()
    raise ValueError(f"unknown router {name!r}; choose from {', '.join(ROUTER_NAMES)}")
