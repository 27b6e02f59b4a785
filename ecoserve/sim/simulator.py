"""Discrete-event simulation of a serving cluster on a virtual clock.

Entities: requests arrive, a placement binds them to workers (at once, or when a worker can start
them), each worker runs iterations whose
plan comes from its policy (the same objects the live scheduler runs) and whose duration comes from
the cost model. Events: an arrival, the end of a worker's iteration, and (disaggregated serving)
the end of a KV transfer from a prefill to a decode instance.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from ecoserve.core.cost_model import CostModel
from ecoserve.core.hardware import kv_bytes_per_token
from ecoserve.core.placement import make_placement
from ecoserve.core.plan import BatchPlan
from ecoserve.core.request import Request
from ecoserve.core.scheduler import SchedulerStats
from ecoserve.metrics import RequestRecord, RunSummary, summarize
from ecoserve.sim.cluster import ClusterConfig, SimWorker, build_workers
from ecoserve.sim.predictions import PredictorMode, make_predictions
from ecoserve.workload import RequestSpec

_ITERATION_DONE, _HANDOFF = 0, 1


OverlongMode = Literal["reject", "drop", "truncate"]
OVERLONG_MODES: tuple[str, ...] = ("reject", "drop", "truncate")


@dataclass(slots=True)
class SimResult:
    records: list[RequestRecord]
    num_requests: int  # requests offered, rejected ones included
    rejected_overlong: int  # refused at arrival: prompt + output exceed the model's context
    rejected_kv: int  # refused because they need more KV than a worker's whole cache
    truncated: int  # prompts cut to fit the context (overlong="truncate")
    refused: int  # refused by overload control (could no longer meet their TTFT): retryable
    prefix_queries: int  # prompt blocks looked up in the workers' prefix caches
    prefix_hits: int  # of them, found cached
    stats: SchedulerStats
    sim_seconds: float
    wall_seconds: float
    sched_seconds: float
    kv_timeline: tuple[np.ndarray, np.ndarray]  # (time, written share of KV) of worker 0
    kv_util_mean: float  # time-weighted written share of KV, averaged over workers
    dropped: int = 0  # trace rows passed over before the run (overlong="drop", set by Experiment)
    placement_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per decision, wall

    @property
    def rejected(self) -> int:
        """Refused for good: longer than the context, or than a worker's whole KV cache."""
        return self.rejected_overlong + self.rejected_kv

    def summary(self, policy: str, rate: float) -> RunSummary:
        return summarize(
            self.records,
            policy,
            rate,
            num_requests=self.num_requests,
            preemptions=self.stats.preemptions,
            overruns=self.stats.overruns,
            kv_util_mean=self.kv_util_mean,
            sched_us_per_iter=1e6 * self.sched_seconds / max(self.stats.iterations, 1),
            sim_speedup=self.sim_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0,
            rejected=self.rejected,
            refused=self.refused,
            truncated=self.truncated,
            dropped=self.dropped,
            prefix_queries=self.prefix_queries,
            prefix_hits=self.prefix_hits,
        )


def fit_to_context(spec: RequestSpec, max_len: int) -> RequestSpec:
    """The request with its prompt cut (from the front, keeping the latest tokens, as
    truncate_prompt_tokens does) so prompt + output fit; the output too if it alone does not."""
    output = min(spec.output_len, max_len - 1)
    # A prompt cut at its front no longer starts with the blocks its hashes name.
    return replace(spec, prompt_len=min(spec.prompt_len, max_len - output), output_len=output, block_hashes=None)


class Simulator:
    def __init__(self, config: ClusterConfig, seed: int = 0) -> None:
        self.config = config
        self.cost = CostModel.load(config.model, config.gpu, config.tp)
        self.rng = np.random.default_rng(seed)
        self.workers = build_workers(config, self.cost)
        self._kv_bytes = kv_bytes_per_token(self.cost.model)
        self._events: list[tuple[float, int, int, object]] = []
        self._seq = itertools.count()
        self._plans: dict[int, BatchPlan] = {}
        self.placement = make_placement(config.placement, self.cost, seed)
        self._pending: list[Request] = []  # held by a late-binding placement, on no worker yet
        self._place_seconds: list[float] = []  # wall time of each placement decision
        self._records: list[RequestRecord] = []
        self._rejected_kv = 0
        self._refused = 0
        self._progress: Callable[[int], None] | None = None
        self._sched_seconds = 0.0
        self._kv_time = [0.0] * len(self.workers)
        self._kv_area = [0.0] * len(self.workers)
        self._timeline: tuple[list[float], list[float]] = ([], [])

    # --- building requests -------------------------------------------------------------------

    def make_requests(
        self,
        specs: Sequence[RequestSpec],
        predictor: PredictorMode = "noisy",
        overlong: OverlongMode = "reject",
    ) -> tuple[list[Request], int, int]:
        """Requests to run, how many were refused for exceeding the model's context, how many cut.

        reject: such a request is refused at arrival, as the gateway answers 400; it is offered
        and counts as a miss, but takes no GPU time. truncate: its prompt is cut to fit. drop is
        the caller's: pass only the rows that fit (Experiment selects them before timing them).
        """
        max_len = self.cost.model.max_model_len
        fits = [s.prompt_len + s.output_len <= max_len for s in specs]
        if overlong == "truncate":
            run = [s if ok else fit_to_context(s, max_len) for s, ok in zip(specs, fits)]
        elif overlong in ("reject", "drop"):
            run = [s for s, ok in zip(specs, fits) if ok]
        else:
            raise ValueError(f"unknown overlong mode {overlong!r}; choose from {', '.join(OVERLONG_MODES)}")
        if overlong == "drop" and len(run) < len(specs):
            raise ValueError(f"{len(specs) - len(run)} requests exceed the {max_len}-token context; "
                             "with overlong='drop' select only rows that fit")
        preds = make_predictions(np.array([s.output_len for s in run] or [1]), predictor, self.rng)
        reqs = [
            Request(
                id=i,
                arrival=s.arrival,
                prompt_len=s.prompt_len,
                max_tokens=max_len - s.prompt_len,
                prediction=preds[i],
                slo=self.config.slo,
                output_len=s.output_len,
                block_hashes=s.block_hashes or (),
            )
            for i, s in enumerate(run)
        ]
        cut = len(fits) - sum(fits)
        return reqs, (cut if overlong == "reject" else 0), (cut if overlong == "truncate" else 0)

    # --- the event loop ----------------------------------------------------------------------

    def run(
        self,
        specs: Sequence[RequestSpec],
        predictor: PredictorMode = "noisy",
        progress: Callable[[int], None] | None = None,
        overlong: OverlongMode = "reject",
    ) -> SimResult:
        """Run every request to its end; `progress(n)` whenever n more have ended (finished or refused)."""
        requests, rejected, truncated = self.make_requests(specs, predictor, overlong)
        self._progress = progress
        if progress and rejected:
            progress(rejected)
        wall0 = time.perf_counter()
        now = 0.0
        next_arrival = 0
        done = 0
        while next_arrival < len(requests) or self._events:
            if next_arrival < len(requests) and (
                not self._events or requests[next_arrival].arrival <= self._events[0][0]
            ):
                req = requests[next_arrival]
                next_arrival += 1
                now = req.arrival
                self._arrive(req, now)
                continue
            now, _, kind, payload = heapq.heappop(self._events)
            if kind == _ITERATION_DONE:
                worker = payload  # type: ignore[assignment]
                finished = self._finish_iteration(worker, now)
                done += finished
                if progress and finished:
                    progress(finished)
                self._start(worker, now)
            else:
                req = payload  # type: ignore[assignment]
                worker = self._least_kv([w for w in self.workers if w.role == "decode"])
                worker.sched.add_request(req)
                self._start(worker, now)
        unfinished = sum(w.sched.num_unfinished for w in self.workers) + len(self._pending)
        if unfinished:
            raise RuntimeError(f"simulation ended with {unfinished} requests unfinished")
        stats = SchedulerStats()
        for w in self.workers:
            for name in stats.__slots__:
                setattr(stats, name, getattr(stats, name) + getattr(w.sched.stats, name))
        return SimResult(
            records=self._records,
            num_requests=len(specs),
            rejected_overlong=rejected,
            rejected_kv=self._rejected_kv,
            truncated=truncated,
            refused=self._refused,
            prefix_queries=sum(w.sched.ledger.prefix.queries for w in self.workers),
            prefix_hits=sum(w.sched.ledger.prefix.hits for w in self.workers),
            stats=stats,
            sim_seconds=now,
            wall_seconds=time.perf_counter() - wall0,
            sched_seconds=self._sched_seconds,
            kv_timeline=(np.array(self._timeline[0]), np.array(self._timeline[1])),
            placement_seconds=np.array(self._place_seconds),
            kv_util_mean=float(
                np.mean([a / t for a, t in zip(self._kv_area, self._kv_time) if t > 0] or [0.0])
            ),
        )

    def _entry_workers(self) -> list[SimWorker]:
        return [w for w in self.workers if w.role != "decode"]

    def _arrive(self, req: Request, now: float) -> None:
        """Bind a new request to a worker now, or hold it in the cell's queue (late binding) and
        let every idle worker see whether it is the one to start it."""
        entry = self._entry_workers()
        t0 = time.perf_counter()
        index = 0 if len(entry) == 1 else self.placement.arrive(req, [w.sched for w in entry], now)
        self._place_seconds.append(time.perf_counter() - t0)
        if index is None:
            self._pending.append(req)
            for worker in entry:
                self._start(worker, now)
            return
        entry[index].sched.add_request(req)
        self._start(entry[index], now)

    @staticmethod
    def _least_kv(candidates: list[SimWorker]) -> SimWorker:
        return min(candidates, key=lambda w: (w.sched.kv_load(), w.sched.num_unfinished))

    def _start(self, worker: SimWorker, now: float) -> None:
        """Plan and launch the worker's next iteration, if it is idle and has work."""
        sched = worker.sched
        if self._pending and not worker.busy and worker.role != "decode":
            entry = [w.sched for w in self._entry_workers()]
            t0 = time.perf_counter()
            taken = self.placement.assign(self._pending, entry, worker.index, now)
            self._place_seconds.append(time.perf_counter() - t0)
            for req in taken:
                sched.add_request(req)
        while not worker.busy and sched.has_work():
            t0 = time.perf_counter()
            plan = sched.schedule(now)
            self._sched_seconds += time.perf_counter() - t0
            if plan.refused:
                self._refused += len(plan.refused)
                if self._progress:
                    self._progress(len(plan.refused))
            if plan:
                duration = self.cost.iteration_time(*plan.shape())
                worker.busy = True
                self._plans[worker.index] = plan
                heapq.heappush(self._events, (now + duration, next(self._seq), _ITERATION_DONE, worker))
                self._sample_kv(worker, now, duration)
                return
            if plan.refused:
                continue  # it only refused requests: plan again for what is left
            if sched.running or sched.gt_queue or not sched.waiting:
                raise RuntimeError(f"policy {sched.policy.name} planned nothing with work in the batch")
            # Nothing runs and the head of the queue still does not fit: it never will.
            sched.abort(sched.waiting[0].id, now, "rejected")
            self._rejected_kv += 1
            if self._progress:
                self._progress(1)

    def _finish_iteration(self, worker: SimWorker, now: float) -> int:
        worker.busy = False
        plan = self._plans.pop(worker.index)
        finished = worker.sched.update(plan, now)
        for req in finished:
            self._records.append(_record(req))
        if worker.role == "prefill":
            for req in list(worker.sched.gt_queue):
                worker.sched.detach(req)
                delay = req.num_computed * self._kv_bytes / (self.config.link_gbytes_per_s * 1e9)
                heapq.heappush(self._events, (now + delay, next(self._seq), _HANDOFF, req))
        return len(finished)

    def _sample_kv(self, worker: SimWorker, now: float, duration: float) -> None:
        ledger = worker.sched.ledger
        share = ledger.written / ledger.capacity
        self._kv_time[worker.index] += duration
        self._kv_area[worker.index] += share * duration
        if worker.index == 0:
            self._timeline[0].append(now)
            self._timeline[1].append(share)


def _record(req: Request) -> RequestRecord:
    times = np.asarray(req.token_times)
    return RequestRecord(
        arrival=req.arrival,
        first_token=req.first_token_time if req.first_token_time is not None else req.finish_time,
        finish=req.finish_time if req.finish_time is not None else req.arrival,
        prompt_len=req.prompt_len,
        output_len=req.generated,
        ttft_slo=req.slo.ttft,
        tpot_slo=req.slo.tpot,
        itl=np.diff(times),
        preemptions=req.preemptions,
    )
