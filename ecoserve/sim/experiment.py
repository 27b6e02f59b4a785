"""Experiments: one workload and cluster, run at several rates or searched for capacity per policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ecoserve.core.cost_model import CostModel
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
from ecoserve.sim.predictions import PredictorMode
from ecoserve.sim.simulator import SimResult, Simulator
from ecoserve.workload import RequestSpec, load_workload


@dataclass(frozen=True, slots=True)
class Experiment:
    workload: str = "azure-conv"
    num_requests: int | None = 1000
    seed: int = 0
    burstiness: float = 1.0
    predictor: PredictorMode = "noisy"
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def specs(self, rate: float | None) -> list[RequestSpec]:
        return load_workload(self.workload, self.num_requests, rate, self.seed, self.burstiness)

    def run(self, policy: str, rate: float, progress: Callable[[int], None] | None = None) -> SimResult:
        sim = Simulator(replace(self.cluster, policy=policy), self.seed)
        return sim.run(self.specs(rate), self.predictor, progress)

    def evaluate(self, policy: str) -> Callable[[float], tuple[RunSummary, list[RequestRecord]]]:
        def evaluate(rate: float) -> tuple[RunSummary, list[RequestRecord]]:
            result = self.run(policy, rate)
            return result.summary(policy, rate), result.records

        return evaluate

    def limit(self) -> Limit:
        """The capacity bound of DESIGN section 5 for this workload on the whole cluster."""
        cost = CostModel.load(self.cluster.model, self.cluster.gpu, self.cluster.tp)
        blocks = self.cluster.kv_blocks or cost.kv_capacity_blocks(self.cluster.block_size, self.cluster.mem_fraction)
        specs = [s for s in self.specs(1.0) if s.prompt_len + s.output_len <= cost.model.max_model_len]
        one = capacity_limit(specs, cost, blocks * self.cluster.block_size, max_batch=1024)
        workers = self.cluster.num_workers
        return replace(one, kv_bound=one.kv_bound * workers, compute_bound=one.compute_bound * workers)

    def capacity(
        self,
        policy: str,
        criterion: Criterion,
        hint: float,
        progress: Callable[[Probe], None] | None = None,
    ) -> CapacityResult:
        """Capacity by bisection from [hint/4, hint] (see search_capacity)."""
        return search_capacity(self.evaluate(policy), criterion, hint, progress=progress)
