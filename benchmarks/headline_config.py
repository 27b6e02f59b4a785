"""What the headline evaluation runs: its settings, scenarios, the perturbations a capacity must
survive, and the shape of its results (shared by headline.py and headline_report.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ecoserve.core.cost_model import CostModel
from ecoserve.metrics import CapacityResult, Criterion, Limit, RunSummary
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.sim.predictions import PredictorMode

HEADLINE = ("ecoserve", "vllm", "vllm-budget", "vllm-sjf", "vllm-v0", "orca")
TARGETS = Path(__file__).resolve().parents[1] / "docs" / "targets.md"
CLUSTER = TARGETS.parent / "results_cluster.md"  # written by benchmarks/cluster.py
CRITERIA = {"slo": Criterion("slo"), "itl": Criterion("itl")}
LOADS = (0.5, 0.8, 1.0, 1.5)  # equal-rate table: shares of vllm's slo capacity (1.5: overload)
OVERLOAD = 1.5
CURVE_LOADS = (0.3, 0.65, 1.2)  # further rates for the latency-vs-rate plots only
GOODPUT_TTFT = (0.2, 1.0)  # P90 TTFT targets, s: DistServe's default, and a looser one for 8B/A100
GOODPUT_TPOT = 0.1  # P90 TPOT target, s (DistServe's default)
MAX_GPUS = 16


@dataclass(frozen=True, slots=True)
class Settings:
    num_requests: int
    predictor: PredictorMode
    rel_tol: float
    goodput_rates: tuple[float, ...]
    predictor_modes: tuple[PredictorMode, ...]  # the predictor comparison
    goodput_requests: int  # requests per run of the GPU-count search (hundreds of runs)
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Variant:
    """A perturbation a headline capacity must survive before a ratio is claimed from it."""

    key: str
    kv_scale: float = 1.0  # KV blocks relative to the scenario's
    slice: int = 0  # 0: the first num_requests rows; 1: the next ones, with seed + 1


BASE = Variant("base")
VARIANTS = (BASE, Variant("KV -2%", kv_scale=0.98), Variant("KV +2%", kv_scale=1.02), Variant("slice 2", slice=1))


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    workload: str
    model: str = "llama-3-8b"
    gpu: str = "a100-40gb"
    tp: int = 1
    kv_share: float = 1.0  # KV cache as a share of what the GPU's memory leaves for it
    overlong: str = "reject"  # what happens to requests over the model's context (--overlong)

    @property
    def label(self) -> str:
        kv = "" if self.kv_share == 1 else f", KV x{self.kv_share:g} (KVC-constrained)"
        tp = "" if self.tp == 1 else f" tp={self.tp}"
        fit = "" if self.overlong == "reject" else f", rows that fit ({self.overlong})"
        return f"{self.workload}, {self.model}, {self.gpu}{tp}{kv}{fit}"

    @property
    def tick(self) -> str:
        """A short label for plot axes."""
        gpu = self.gpu if self.tp == 1 else f"{self.tp} x {self.gpu}"
        kv = "" if self.kv_share == 1 else f"\nKV x{self.kv_share:g}"
        return f"{self.workload}\n{self.model}\n{gpu}{kv}"

    def kv_blocks(self, scale: float = 1.0) -> int | None:
        if self.kv_share == 1 and scale == 1:
            return None
        defaults = ClusterConfig()
        cost = CostModel.load(self.model, self.gpu, self.tp)
        full = cost.kv_capacity_blocks(defaults.block_size, defaults.mem_fraction)
        return int(full * self.kv_share * scale)

    def cluster(self, variant: Variant = BASE, **changes: Any) -> ClusterConfig:
        base = ClusterConfig(model=self.model, gpu=self.gpu, tp=self.tp, kv_blocks=self.kv_blocks(variant.kv_scale))
        return replace(base, **changes)

    def experiment(
        self, settings: Settings, predictor: PredictorMode | None = None, variant: Variant = BASE,
        num_requests: int | None = None, **changes: Any,
    ) -> Experiment:
        return Experiment(
            self.workload,
            num_requests or settings.num_requests,
            settings.seed + variant.slice,
            predictor=predictor or settings.predictor,
            cluster=self.cluster(variant, **changes),
            start=variant.slice * settings.num_requests,
            overlong=self.overlong,  # type: ignore[arg-type]
        )

    def flags(self) -> str:
        """`ecoserve simulate` options that select this scenario."""
        parts = [f"--workload {self.workload} --model {self.model} --gpu {self.gpu}"]
        if self.tp != 1:
            parts.append(f"--tp {self.tp}")
        if self.kv_share != 1:
            parts.append(f"--kv-blocks {self.kv_blocks()}")
        if self.overlong != "reject":
            parts.append(f"--overlong {self.overlong}")
        return " ".join(parts)


# Models whose context fits the workload (Llama-3-8B: 8k); Llama-2-70B's 4k fits arxiv. The
# KVC-constrained scenario keeps about the KV tokens of the earlier Llama-2-7B quarter-KV one.
PAPER = Scenario("conv", "azure-conv")
KVC = Scenario("kvc", "azure-conv", kv_share=1 / 16)
SCENARIOS = (
    PAPER,
    Scenario("code", "azure-code"),
    Scenario("sharegpt", "sharegpt"),
    Scenario("a100-80", "azure-conv", gpu="a100-80gb"),
    Scenario("h100", "azure-conv", gpu="h100-80gb"),
    Scenario("70b", "arxiv", model="llama-2-70b", gpu="a100-80gb", tp=4),
    KVC,
    # The earlier tables' model: only the rows that fit its 4k context, stated as such.
    Scenario("conv-4k", "azure-conv", model="llama-2-7b", overlong="drop"),
)
QUICK_SCENARIOS = (PAPER, KVC)
SENSITIVE = ("ecoserve", "vllm", "vllm-budget", "vllm-sjf", "vllm-v0")  # the ratios claimed are against these
COMPARED = SENSITIVE[1:]


@dataclass(frozen=True, slots=True)
class Fit:
    """The smallest cluster found meeting one P90 TTFT target at the goodput rate."""

    gpus: int
    layout: str



@dataclass(slots=True)
class Results:
    limits: dict[str, Limit]
    capacity: dict[tuple[str, str, str, str], dict[str, CapacityResult]]  # (scenario, policy, predictor, variant)
    runs: dict[tuple[str, str, float], RunSummary]  # (scenario, policy, load)
    goodput: dict[tuple[float, str], dict[float, Fit | None]]  # (rate, policy) -> TTFT -> fit
    requests: dict[str, str] = field(default_factory=dict)  # scenario -> what was over the context
