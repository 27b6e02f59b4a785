"""Experiments: one workload and cluster, run at several rates or searched for capacity per policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ecoserve.core.cost_model import CostModel
from ecoserve.core.hardware import get_model
from ecoserve.metrics import (
    CapacityResult,
    Criterion,
    Limit,
    Probe,
    RequestRecord,
    RunSummary,
    capacity_limit,
    search_capacity,
)
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.predictions import PredictorMode, length_forecast
from ecoserve.sim.simulator import OverlongMode, SimResult, Simulator, fit_to_context
from ecoserve.workload import RequestSpec, Workload, select_workload


@dataclass(frozen=True, slots=True)
class Experiment:
    """One workload on one cluster. `overlong` says what happens to requests longer than the
    model's context (Simulator.make_requests); with "drop" they are passed over when the rows are
    selected, so the rate is the rate of the requests that run."""

    workload: str = "azure-conv"
    num_requests: int | None = 1000
    seed: int = 0
    burstiness: float = 1.0
    predictor: PredictorMode = "noisy"
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    start: int = 0  # first row (timed traces) or shuffle position (length sets)
    overlong: OverlongMode = "reject"
    spread_ties: bool = True

    @property
    def max_len(self) -> int:
        return get_model(self.cluster.model).max_model_len

    def over_context(self, specs: list[RequestSpec]) -> int:
        """How many of these requests the model's context cannot hold (prompt + output)."""
        return sum(s.prompt_len + s.output_len > self.max_len for s in specs)

    def select(self, rate: float | None) -> Workload:
        return select_workload(
            self.workload, self.num_requests, rate, self.seed, self.burstiness, self.start,
            max_len=self.max_len if self.overlong == "drop" else None, spread_ties=self.spread_ties,
        )

    def specs(self, rate: float | None) -> list[RequestSpec]:
        return self.select(rate).specs

    def run(self, policy: str, rate: float, progress: Callable[[int], None] | None = None) -> SimResult:
        selected = self.select(rate)
        cluster = replace(self.cluster, policy=policy)
        if cluster.options.lengths is None:  # the scheduler knows how its predictor errs
            lens = np.array([s.output_len for s in selected.specs])
            cluster = replace(cluster, options=replace(cluster.options, lengths=length_forecast(lens, self.predictor)))
        sim = Simulator(cluster, self.seed)
        result = sim.run(selected.specs, self.predictor, progress, self.overlong)
        return replace(result, dropped=selected.skipped_overlong)

    def evaluate(
        self, policy: str, progress: Callable[[int], None] | None = None
    ) -> Callable[[float], tuple[RunSummary, list[RequestRecord]]]:
        def evaluate(rate: float) -> tuple[RunSummary, list[RequestRecord]]:
            result = self.run(policy, rate, progress)
            return result.summary(policy, rate), result.records

        return evaluate

    def limit(self) -> Limit:
        """The capacity bound of DESIGN section 5 for this workload on the whole cluster, in the
        rate of requests offered: rejected requests cost nothing, so with overlong="reject" the
        bound over the requests that run is divided by the share that fits."""
        cost = CostModel.load(self.cluster.model, self.cluster.gpu, self.cluster.tp)
        blocks = self.cluster.kv_blocks or cost.kv_capacity_blocks(self.cluster.block_size, self.cluster.mem_fraction)
        offered = self.specs(1.0)
        max_len = cost.model.max_model_len
        if self.overlong == "truncate":
            served = [s if s.prompt_len + s.output_len <= max_len else fit_to_context(s, max_len) for s in offered]
        else:
            served = [s for s in offered if s.prompt_len + s.output_len <= max_len]
        one = capacity_limit(served, cost, blocks * self.cluster.block_size, max_batch=1024)
        scale = self.cluster.num_workers * len(offered) / len(served)
        return replace(one, kv_bound=one.kv_bound * scale, compute_bound=one.compute_bound * scale)

    def capacity(
        self,
        policy: str,
        criterion: Criterion,
        hint: float,
        progress: Callable[[Probe], None] | None = None,
    ) -> CapacityResult:
        """Capacity by bisection from [hint/4, hint] (see search_capacity)."""
        return search_capacity(self.evaluate(policy), criterion, hint, progress=progress)


def describe_requests(exp: Experiment, selected: Workload) -> list[str]:
    """What was done to the trace's rows, in words: over-long requests and tied stamps."""
    n, max_len, model = len(selected.specs), exp.max_len, exp.cluster.model
    over = exp.over_context(selected.specs)
    if exp.overlong == "drop":
        lines = [f"{selected.skipped_overlong} trace rows longer than the {max_len}-token context of {model} "
                 f"were passed over (--overlong drop) to select {n} that fit; rates and SLO attainment "
                 "refer to the requests that run."]
    elif exp.overlong == "truncate":
        lines = [f"{over} of {n} prompts were cut to fit the {max_len}-token context of {model} "
                 "(--overlong truncate)."]
    elif over:
        lines = [f"{over} of {n} requests ({100 * over / n:.1f}%) exceed the {max_len}-token context of {model}: "
                 "rejected at arrival (--overlong reject). Rates are offered rates, rejected requests "
                 "included; SLO attainment counts them as misses."]
    else:
        lines = [f"All {n} requests fit the {max_len}-token context of {model}."]
    if selected.tie_resolution is not None:
        lines.append(f"{selected.tied} requests shared an arrival stamp; each was spread uniformly within the "
                     f"trace's timestamp resolution of {selected.tie_resolution:g} s (--keep-ties: as recorded).")
    elif selected.tied:
        lines.append(f"{selected.tied} requests share an arrival stamp and arrive together.")
    return lines
