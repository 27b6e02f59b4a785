"""Headline evaluation (DESIGN section 5): capacity, latency at equal rates, ablations, GPUs for goodput.

Writes docs/results.md and docs/img/results_*.png from simulation alone:

    .venv/bin/python benchmarks/headline.py [--jobs 2] [--num-requests 1000]
    .venv/bin/python benchmarks/headline.py --quick    # smoke configuration, about a minute

Independent capacity searches and runs go to a process pool (--jobs). Everything is seeded:
the same command gives the same numbers.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import resource
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ecoserve.core.cost_model import CostModel
from ecoserve.core.policies import ECOSERVE_VARIANTS
from ecoserve.metrics import CapacityResult, Criterion, Limit, RequestRecord, RunSummary, search_capacity
from ecoserve.metrics.plots import plot_latency_vs_rate
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.sim.predictions import PREDICTOR_MODES, PredictorMode

HEADLINE = ("ecoserve", "vllm", "vllm-budget", "vllm-v0", "orca")
TARGETS = Path(__file__).resolve().parents[1] / "docs" / "targets.md"
CRITERIA = {"slo": Criterion("slo"), "itl": Criterion("itl")}
LOADS = (0.5, 0.8, 1.0)  # equal-rate table: shares of vllm's slo capacity
CURVE_LOADS = (0.3, 0.65, 1.2)  # further rates for the latency-vs-rate plots only
GOODPUT_TTFT = (0.2, 1.0)  # P90 TTFT targets, s: DistServe's default, and a looser one for 7B/A100
GOODPUT_TPOT = 0.1  # P90 TPOT target, s (DistServe's default)
MAX_GPUS = 16

console = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Settings:
    num_requests: int
    predictor: PredictorMode
    rel_tol: float
    goodput_rates: tuple[float, ...]
    predictor_modes: tuple[PredictorMode, ...]  # the predictor comparison
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    workload: str
    model: str = "llama-2-7b"
    gpu: str = "a100-40gb"
    tp: int = 1
    kv_share: float = 1.0  # KV cache as a share of what the GPU's memory leaves for it

    @property
    def label(self) -> str:
        kv = "" if self.kv_share == 1 else f", KV x{self.kv_share:g} (KVC-constrained)"
        tp = "" if self.tp == 1 else f" tp={self.tp}"
        return f"{self.workload}, {self.model}, {self.gpu}{tp}{kv}"

    @property
    def tick(self) -> str:
        """A short label for plot axes."""
        gpu = self.gpu if self.tp == 1 else f"{self.tp} x {self.gpu}"
        kv = "" if self.kv_share == 1 else f"\nKV x{self.kv_share:g}"
        return f"{self.workload}\n{self.model}\n{gpu}{kv}"

    def kv_blocks(self) -> int | None:
        if self.kv_share == 1:
            return None
        defaults = ClusterConfig()
        cost = CostModel.load(self.model, self.gpu, self.tp)
        full = cost.kv_capacity_blocks(defaults.block_size, defaults.mem_fraction)
        return int(full * self.kv_share)

    def cluster(self, **changes: Any) -> ClusterConfig:
        base = ClusterConfig(model=self.model, gpu=self.gpu, tp=self.tp, kv_blocks=self.kv_blocks())
        return replace(base, **changes)

    def experiment(self, settings: Settings, predictor: PredictorMode | None = None, **changes: Any) -> Experiment:
        return Experiment(
            self.workload,
            settings.num_requests,
            settings.seed,
            predictor=predictor or settings.predictor,
            cluster=self.cluster(**changes),
        )

    def flags(self) -> str:
        """`ecoserve simulate` options that select this scenario."""
        parts = [f"--workload {self.workload} --model {self.model} --gpu {self.gpu}"]
        if self.tp != 1:
            parts.append(f"--tp {self.tp}")
        if self.kv_share != 1:
            parts.append(f"--kv-blocks {self.kv_blocks()}")
        return " ".join(parts)


PAPER = Scenario("paper", "azure-conv")
KVC = Scenario("kvc", "azure-conv", kv_share=0.25)
SCENARIOS = (
    PAPER,
    Scenario("code", "azure-code"),
    Scenario("sharegpt", "sharegpt"),
    Scenario("a100-80", "azure-conv", gpu="a100-80gb"),
    Scenario("h100", "azure-conv", gpu="h100-80gb"),
    Scenario("70b", "azure-conv", model="llama-2-70b", gpu="a100-80gb", tp=4),
    KVC,
)
QUICK_SCENARIOS = (PAPER, KVC)


# --- tasks (run in pool processes) ---------------------------------------------------------


def search(
    settings: Settings, scenario: Scenario, policy: str, predictor: PredictorMode, hint: float
) -> dict[str, CapacityResult]:
    """Capacity under each criterion; both searches share the runs they both probe."""
    evaluate = scenario.experiment(settings, predictor).evaluate(policy)
    runs: dict[float, tuple[RunSummary, list[RequestRecord]]] = {}

    def cached(rate: float) -> tuple[RunSummary, list[RequestRecord]]:
        if rate not in runs:
            runs[rate] = evaluate(rate)
        return runs[rate]

    found: dict[str, CapacityResult] = {}
    for name, criterion in CRITERIA.items():
        found[name] = search_capacity(cached, criterion, hint, rel_tol=settings.rel_tol)
    return found


def run_at(settings: Settings, scenario: Scenario, policy: str, rate: float) -> RunSummary:
    return scenario.experiment(settings).run(policy, rate).summary(policy, rate)


@dataclass(frozen=True, slots=True)
class Fit:
    """The smallest cluster found meeting one P90 TTFT target at the goodput rate."""

    gpus: int
    layout: str


def smallest_clusters(
    settings: Settings, scenario: Scenario, policy: str, rate: float
) -> dict[float, Fit | None]:
    """For each TTFT target, the fewest GPUs whose run at `rate` meets P90 TTFT and P90 TPOT.

    Colocated: num_workers = 1, 2, ...; distserve: every prefill/decode split of each total.
    """
    fits: dict[float, Fit | None] = dict.fromkeys(GOODPUT_TTFT)
    for gpus in range(1, MAX_GPUS + 1):
        if policy == "distserve":
            layouts = {
                f"{p} prefill + {gpus - p} decode": {"prefill_workers": p, "decode_workers": gpus - p}
                for p in range(1, gpus)
            }
        else:
            layouts = {f"{gpus} workers": {"num_workers": gpus}}
        for label, layout in layouts.items():
            exp = scenario.experiment(settings, policy=policy, **layout)
            summary = exp.run(policy, rate).summary(policy, rate)
            for ttft, fit in fits.items():
                if fit is None and summary.ttft_p90 <= ttft and summary.tpot_p90 <= GOODPUT_TPOT:
                    fits[ttft] = Fit(exp.cluster.num_gpus, label)
            if all(fits.values()):
                return fits
    return fits


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    """Run a task; a failure comes back as its formatted traceback, not a bare exception."""
    try:
        return True, fn(*args)
    except Exception:  # noqa: BLE001 - reported with the task that raised it
        return False, traceback.format_exc()


class Runner:
    """Tasks on a process pool, results as they finish; more tasks may be added meanwhile."""

    def __init__(self, pool: Any, progress: Progress) -> None:
        self.pool = pool
        self.progress = progress
        self.bar = progress.add_task("tasks", total=0)
        self.done: queue.SimpleQueue[tuple[tuple[Any, ...], tuple[bool, Any]]] = queue.SimpleQueue()
        self.keys: set[tuple[Any, ...]] = set()
        self.pending = 0

    def submit(self, key: tuple[Any, ...], fn: Callable[..., Any], *args: Any) -> None:
        if key in self.keys:
            return
        self.keys.add(key)
        self.pending += 1
        self.progress.update(self.bar, total=len(self.keys))
        self.pool.apply_async(_call, (fn, args), callback=lambda out: self.done.put((key, out)))

    def results(self) -> Iterator[tuple[tuple[Any, ...], Any]]:
        while self.pending:
            key, (ok, value) = self.done.get()
            self.pending -= 1
            if not ok:
                raise RuntimeError(f"task {key} failed:\n{value}")
            self.progress.update(self.bar, advance=1, description=" ".join(map(str, key)))
            yield key, value


# --- the evaluation ------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    limits: dict[str, Limit]
    capacity: dict[tuple[str, str, str], dict[str, CapacityResult]]  # (scenario, policy, predictor)
    runs: dict[tuple[str, str, float], RunSummary]  # (scenario, policy, load)
    goodput: dict[tuple[float, str], dict[float, Fit | None]]  # (rate, policy) -> TTFT -> fit


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (the pool's workers, once it is closed)."""
    usage = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(u.ru_utime + u.ru_stime for u in usage)


def noisy_available() -> bool:
    try:
        from ecoserve.predictor.error_model import ErrorModel

        ErrorModel.load_default()
    except (ImportError, OSError):
        return False
    return True


def evaluate(settings: Settings, scenarios: tuple[Scenario, ...], jobs: int) -> Results:
    results = Results({s.key: s.experiment(settings).limit() for s in scenarios}, {}, {}, {})
    by_key = {s.key: s for s in scenarios}
    main = settings.predictor
    progress = Progress(
        TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    )
    with multiprocessing.Pool(jobs) as pool, progress:
        runner = Runner(pool, progress)

        def capacity(scenario: Scenario, policy: str, predictor: PredictorMode = main) -> None:
            key = ("search", scenario.key, policy, predictor)
            runner.submit(key, search, settings, scenario, policy, predictor, results.limits[scenario.key].capacity)

        # vllm on the equal-rate scenarios first: their runs are queued as soon as it is known.
        for scenario in (PAPER, KVC):
            capacity(scenario, "vllm")
        for scenario in scenarios:
            for policy in HEADLINE:
                capacity(scenario, policy)
        for policy in ECOSERVE_VARIANTS:
            capacity(KVC, policy)
        for mode in settings.predictor_modes:
            capacity(KVC, "ecoserve", mode)
        for rate in settings.goodput_rates:
            for policy in ("ecoserve", "distserve"):
                runner.submit(("goodput", rate, policy), smallest_clusters, settings, PAPER, policy, rate)

        for key, value in runner.results():
            kind, *rest = key
            if kind == "search":
                results.capacity[tuple(rest)] = value  # type: ignore[index]
                scenario_key, policy, predictor = rest
                if policy == "vllm" and predictor == main and scenario_key in (PAPER.key, KVC.key):
                    base = value["slo"].capacity
                    if base <= 0:
                        raise RuntimeError(f"vllm meets the slo criterion at no rate tried on {scenario_key}")
                    scenario = by_key[scenario_key]
                    for load in LOADS + CURVE_LOADS:
                        for policy in HEADLINE:
                            key = ("run", scenario_key, policy, load)
                            runner.submit(key, run_at, settings, scenario, policy, load * base)
            elif kind == "run":
                results.runs[tuple(rest)] = value  # type: ignore[index]
            else:
                results.goodput[tuple(rest)] = value  # type: ignore[index]
    return results


# --- the report ----------------------------------------------------------------------------


def fmt_capacity(found: CapacityResult) -> str:
    if found.capacity == 0:
        return f"< {found.upper:.2f}"
    if math.isinf(found.upper):
        return f">= {found.capacity:.2f}"
    return f"{found.capacity:.2f}"


def ratio(a: CapacityResult, b: CapacityResult) -> str:
    """a's capacity over b's; when b met no rate tried, a lower bound from b's failing rate."""
    if b.capacity > 0:
        return f"{a.capacity / b.capacity:.2f}x"
    return f"> {a.capacity / b.upper:.1f}x" if a.capacity > 0 else "n/a"


def at_capacity(found: CapacityResult) -> RunSummary | None:
    """The run at the capacity rate (the highest rate that met the criterion)."""
    return next((p.summary for p in found.probes if p.met and p.rate == found.capacity), None)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def command_block(command: str) -> list[str]:
    return ["```", command, "```", ""]


def scenario_section(res: Results, scenarios: tuple[Scenario, ...], main: str) -> list[str]:
    rows = []
    for s in scenarios:
        limit = res.limits[s.key]
        eco, vllm = (at_capacity(res.capacity[(s.key, p, main)]["slo"]) for p in ("ecoserve", "vllm"))

        def pair(get: Callable[[RunSummary], float]) -> str:
            return " / ".join(f"{100 * get(r):.0f}%" if r else "n/a" for r in (eco, vllm))

        rows.append([
            s.label, str(s.cluster().num_gpus), f"`{s.flags()}`", f"{limit.kv_bound:.2f}",
            f"{limit.compute_bound:.2f}", limit.binding, pair(lambda r: r.kv_util_mean),
            pair(lambda r: r.throughput_rps / r.rate), str(vllm.preemptions) if vllm else "n/a",
        ])
    header = ["scenario", "GPUs", "`ecoserve simulate` flags", "limit: KV bound", "limit: compute bound",
              "binding", "KV util (ecoserve / vllm)", "served / offered (ecoserve / vllm)", "vllm preemptions"]
    return table(header, rows)


def capacity_section(res: Results, scenarios: tuple[Scenario, ...], main: str, criterion: str) -> list[str]:
    rows = []
    for s in scenarios:
        limit = res.limits[s.key].capacity
        found = {p: res.capacity[(s.key, p, main)][criterion] for p in HEADLINE}
        cells = [f"{fmt_capacity(f)} ({100 * f.capacity / limit:.0f}%)" for f in found.values()]
        eco = found["ecoserve"]
        rows.append([s.label, f"{limit:.2f}", *cells, ratio(eco, found["vllm-v0"]), ratio(eco, found["vllm"])])
    return table(["scenario", "limit", *HEADLINE, "ecoserve / vllm-v0", "ecoserve / vllm"], rows)


def equal_rate_section(res: Results, scenario: Scenario) -> list[str]:
    rows = []
    for load in LOADS:
        ref = res.runs[(scenario.key, "vllm", load)]
        for policy in HEADLINE:
            r = res.runs[(scenario.key, policy, load)]
            jct_cut = round(100 * (1 - r.jct_mean / ref.jct_mean))
            slo_gain = "n/a"
            if ref.slo_attainment > 0:
                slo_gain = f"{round(100 * (r.slo_attainment / ref.slo_attainment - 1)):+d}%"
            rows.append([
                f"{100 * load:.0f}%", f"{r.rate:.2f}", policy, f"{r.jct_mean:.1f}", f"{jct_cut:+d}%",
                f"{r.ttft_p99:.2f}", f"{1e3 * r.itl_p99:.0f}", f"{100 * r.slo_attainment:.1f}%", slo_gain,
                str(r.preemptions),
            ])
    header = ["load (of vllm slo capacity)", "rate", "policy", "mean JCT (s)", "JCT reduction vs vllm",
              "P99 TTFT (s)", "P99 ITL (ms)", "SLO attainment", "SLO attainment vs vllm", "preemptions"]
    return table(header, rows)


def ablation_section(res: Results, main: str) -> list[str]:
    ref = res.capacity[(KVC.key, "ecoserve", main)]
    rows = []
    for policy in ECOSERVE_VARIANTS:
        found = res.capacity[(KVC.key, policy, main)]
        rows.append([policy] + [
            cell for c in CRITERIA for cell in (fmt_capacity(found[c]), ratio(found[c], ref[c]))
        ])
    header = ["policy"] + [h for c in CRITERIA for h in (f"{c} capacity", f"{c}: share of ecoserve")]
    return table(header, rows)


def predictor_section(res: Results, settings: Settings) -> list[str]:
    oracle = res.capacity[(KVC.key, "ecoserve-oracle", settings.predictor)]
    configs = [(f"ecoserve --predictor {m}", (KVC.key, "ecoserve", m)) for m in settings.predictor_modes]
    main = settings.predictor
    configs.append((f"ecoserve-oracle --predictor {main}", (KVC.key, "ecoserve-oracle", main)))
    rows = []
    for label, key in configs:
        found = res.capacity[key]
        rows.append([label] + [
            cell for c in CRITERIA for cell in (fmt_capacity(found[c]), ratio(found[c], oracle[c]))
        ])
    header = ["configuration"] + [h for c in CRITERIA for h in (f"{c} capacity", f"{c}: share of ecoserve-oracle")]
    return table(header, rows)


def goodput_section(res: Results, settings: Settings) -> list[str]:
    rows = []
    for rate in settings.goodput_rates:
        for ttft in GOODPUT_TTFT:
            eco, dist = res.goodput[(rate, "ecoserve")][ttft], res.goodput[(rate, "distserve")][ttft]
            saving = f"{100 * (1 - eco.gpus / dist.gpus):.0f}%" if eco and dist else "n/a"
            rows.append([
                f"{rate:g}", f"{1e3 * ttft:.0f}", f"{1e3 * GOODPUT_TPOT:.0f}",
                f"{eco.gpus} ({eco.layout})" if eco else f"> {MAX_GPUS}",
                f"{dist.gpus} ({dist.layout})" if dist else f"> {MAX_GPUS}",
                saving,
            ])
    header = ["rate (req/s)", "P90 TTFT target (ms)", "P90 TPOT target (ms)", "ecoserve GPUs",
              "distserve GPUs", "GPUs saved by ecoserve"]
    return table(header, rows)


def plot_capacity(res: Results, scenarios: tuple[Scenario, ...], main: str, path: Path) -> None:
    """Capacity as a share of each scenario's limit, one group of bars per scenario, per criterion."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 8), layout="constrained")
    width = 0.8 / len(HEADLINE)
    for ax, criterion in zip(fig.subplots(2, 1), CRITERIA):
        top = 1.0
        for i, policy in enumerate(HEADLINE):
            shares = [
                res.capacity[(s.key, policy, main)][criterion].capacity / res.limits[s.key].capacity
                for s in scenarios
            ]
            ax.bar([j + i * width for j in range(len(scenarios))], shares, width, label=policy)
            top = max(top, *shares)
        centers = [j + 0.4 - width / 2 for j in range(len(scenarios))]
        ax.set_xticks(centers, [s.tick for s in scenarios], fontsize="small")
        ax.set_ylim(0, 1.2 * top)
        ax.set_ylabel("capacity / limit")
        ax.set_title(f"capacity under the {criterion} criterion, as a share of the limit")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", ncols=len(HEADLINE))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def write_report(
    res: Results, settings: Settings, scenarios: tuple[Scenario, ...], quick: bool, cost: str, out: Path
) -> None:
    main = settings.predictor
    img = out.parent / "img"
    plot_capacity(res, scenarios, main, img / "results_capacity.png")
    for s in (PAPER, KVC):
        runs = [res.runs[(s.key, p, load)] for p in HEADLINE for load in sorted(LOADS + CURVE_LOADS)]
        plot_latency_vs_rate(runs, img / f"results_latency_{s.key}.png")

    command = ".venv/bin/python benchmarks/headline.py " + shlex.join(sys.argv[1:])
    block = command_block(command.strip())
    lines = ["# Results", ""]
    if quick:
        lines += ["**Smoke configuration (--quick): too few requests and a coarse search; not results.**", ""]
    lines += [
        "Generated by `benchmarks/headline.py`; do not edit by hand, rerun the command above each table.",
        "The closing section, \"Targets\", is hand-written in `docs/targets.md` and appended.",
        "Every number comes from the discrete-event simulator (`ecoserve/sim`), which prices each",
        "iteration with the fitted cost model (`docs/cost_model.md`) and runs the same policy objects",
        "as the live scheduler.",
        "",
        f"- Runs: {settings.num_requests} requests each, seed {settings.seed}. Azure traces keep their",
        "  arrival pattern with inter-arrival times scaled to the rate; ShareGPT arrivals are Poisson.",
        f"- Response-length predictor: `{main}` (`noisy`: the real predictor's measured errors; `oracle`:",
        "  true lengths). SLOs per request: TTFT 2 s, TPOT 100 ms.",
        "- Capacity: the highest rate meeting a criterion, searched as `Experiment.capacity` does: probe",
        "  limit/4, then the limit (doubling while met), then bisect to a "
        f"{100 * settings.rel_tol:g}% bracket; while even the",
        "  low end fails, the bracket moves down 4x. Criteria (`ecoserve.metrics.Criterion`,",
        "  `docs/metrics.md`): `slo` needs SLO attainment >= 90% and the run to keep up (99% of",
        "  requests finish within their own E2E deadline); `itl` needs the same and P99 inter-token",
        "  latency <= 100 ms, so token-level stalls count.",
        "- The limit (DESIGN section 5): the lower of the rate where mean KV occupancy fills the KV",
        "  cache and the rate where prefill plus decode fill every iteration (`Experiment.limit()`).",
        "- KVC-constrained: the paper's GPU scenario with a quarter of its KV blocks.",
        f"- This run took {cost}; wall time grows when other work shares the cores, CPU time does not.",
        "",
        "One cell can be checked with `ecoserve simulate` and the scenario's flags from the first table,",
        "for example (its search uses a 3% bracket):",
        "",
        *command_block(
            f"ecoserve simulate {PAPER.flags()} --policy ecoserve --policy vllm --capacity --criterion itl "
            f"--num-requests {settings.num_requests} --predictor {main}"
        ),
        "## Scenarios and their KV regime",
        "",
        "Limits in requests/s for the whole scenario (all its GPUs). The last three columns describe the",
        "run at each policy's slo capacity and show which regime a scenario is in: KV util is the",
        "time-weighted mean share of the KV cache holding written KV; served / offered is completed",
        "requests per second (first arrival to last finish) over the offered rate, below 100% when a",
        "backlog builds up during the run; vllm preemptions counts recomputations for want of KV.",
        "",
        *block,
        *scenario_section(res, scenarios, main),
        "",
        "## Capacity (requests/s)",
        "",
    ]
    for criterion in CRITERIA:
        lines += [
            f"### Criterion `{criterion}`",
            "",
            "Cells: capacity (share of the limit).",
            "",
            *block,
            *capacity_section(res, scenarios, main, criterion),
            "",
        ]
    lines += ["![capacity](img/results_capacity.png)", "", "## JCT and SLO attainment at equal rates", ""]
    for s in (PAPER, KVC):
        lines += [
            f"### {s.label}",
            "",
            "Rates are shares of vllm's slo capacity. JCT reduction: 1 - JCT / vllm's JCT; SLO attainment",
            "vs vllm: relative change.",
            "",
            *block,
            *equal_rate_section(res, s),
            "",
            f"![latency vs rate](img/results_latency_{s.key}.png)",
            "",
        ]
    lines += [
        "## Ablations",
        "",
        f"{KVC.label}; each variant switches one mechanism off (`ecoserve.core.policies.ECOSERVE_VARIANTS`).",
        "",
        *block,
        *ablation_section(res, main),
        "",
        "### Predictor",
        "",
        "ecoserve with each predictor mode (`none`: every request gets the workload's mean and 90th",
        "percentile), and ecoserve-oracle, which reserves the true length.",
        "",
        *block,
        *predictor_section(res, settings),
        "",
        "## GPUs for a goodput target: colocated ecoserve vs distserve",
        "",
        f"{PAPER.label}. The fewest GPUs whose run at the target rate has P90 TTFT and P90 TPOT within",
        "their targets (DistServe's goodput definition). ecoserve: n colocated workers; distserve: every",
        "prefill/decode split of each total. 200 ms is DistServe's default TTFT target; 1 s is a looser",
        f"one for a 7B model on an A100. Searched up to {MAX_GPUS} GPUs.",
        "",
        *block,
        *goodput_section(res, settings),
        "",
    ]
    if not quick:
        lines += [TARGETS.read_text()]  # the hand-written reading of these tables
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


@click.command()
@click.option("--quick", is_flag=True, help="smoke configuration: two scenarios, 150 requests, 15% search bracket")
@click.option("--jobs", type=int, default=2, show_default=True, help="processes for independent searches and runs")
@click.option("--num-requests", type=int, default=None, help="requests per run  [default: 1000, --quick 150]")
@click.option("--predictor", type=click.Choice(PREDICTOR_MODES), default="noisy", show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None,
    help="[default: docs/results.md; with --quick out/headline-quick/results.md]",
)
def main(quick: bool, jobs: int, num_requests: int | None, predictor: PredictorMode, out: Path | None) -> None:
    """Compute the headline results and write them, with plots, to --out."""
    noisy = noisy_available()
    if predictor == "noisy" and not noisy:
        raise click.UsageError("the noisy predictor's error model is missing; use --predictor oracle")
    settings = Settings(
        num_requests=num_requests or (150 if quick else 1000),
        predictor=predictor,
        rel_tol=0.15 if quick else 0.03,
        goodput_rates=(10.0,) if quick else (5.0, 10.0, 20.0),
        predictor_modes=tuple(m for m in PREDICTOR_MODES if noisy or m != "noisy"),  # type: ignore[misc]
    )
    scenarios = QUICK_SCENARIOS if quick else SCENARIOS
    out = out or Path("out/headline-quick/results.md" if quick else "docs/results.md")
    start = time.perf_counter()
    results = evaluate(settings, scenarios, jobs)
    cost = f"{(time.perf_counter() - start) / 60:.1f} min wall and {cpu_seconds() / 60:.1f} min CPU with --jobs {jobs}"
    write_report(results, settings, scenarios, quick, cost, out)
    console.print(f"wrote {out} and {out.parent / 'img'}/results_*.png: {cost}")


if __name__ == "__main__":
    main()
