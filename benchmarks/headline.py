"""Headline evaluation (DESIGN section 5): capacity, latency at equal rates, ablations, GPUs for goodput.

Writes docs/results.md and docs/img/results_*.png from simulation alone (the report's sections are
in headline_report.py):

    .venv/bin/python benchmarks/headline.py [--jobs 2] [--num-requests 1000]
    .venv/bin/python benchmarks/headline.py --quick    # smoke configuration, about a minute

Independent capacity searches and runs go to a process pool (--jobs). Everything is seeded:
the same command gives the same numbers.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import resource
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from headline_config import (
    BASE,
    CRITERIA,
    CURVE_LOADS,
    GOODPUT_TPOT,
    GOODPUT_TTFT,
    HEADLINE,
    KVC,
    LOADS,
    MAX_GPUS,
    PAPER,
    QUICK_SCENARIOS,
    SCENARIOS,
    SENSITIVE,
    VARIANTS,
    Fit,
    Results,
    Scenario,
    Settings,
    Variant,
)
from headline_report import write_report
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ecoserve.core.policies import ECOSERVE_VARIANTS
from ecoserve.metrics import CapacityResult, RequestRecord, RunSummary, search_capacity
from ecoserve.sim.experiment import Experiment
from ecoserve.sim.predictions import PREDICTOR_MODES, PredictorMode

console = Console(stderr=True)


# --- tasks (run in pool processes) ---------------------------------------------------------


def search(
    settings: Settings, scenario: Scenario, policy: str, predictor: PredictorMode, hint: float,
    variant: Variant = BASE,
) -> dict[str, CapacityResult]:
    """Capacity under each criterion; both searches share the runs they both probe."""
    evaluate = scenario.experiment(settings, predictor, variant).evaluate(policy)
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
            exp = scenario.experiment(settings, num_requests=settings.goodput_requests, policy=policy, **layout)
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


def over_the_context(exp: Experiment) -> str:
    """What happened to the requests longer than the model's context, for the scenario table."""
    selected = exp.select(1.0)
    if exp.overlong == "drop":
        return f"{selected.skipped_overlong} rows passed over"
    return f"{exp.over_context(selected.specs)} of {len(selected.specs)} rejected"


def evaluate(settings: Settings, scenarios: tuple[Scenario, ...], jobs: int) -> Results:
    results = Results({s.key: s.experiment(settings).limit() for s in scenarios}, {}, {}, {})
    results.requests = {s.key: over_the_context(s.experiment(settings)) for s in scenarios}
    by_key = {s.key: s for s in scenarios}
    main = settings.predictor
    progress = Progress(
        TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console,
    )
    with multiprocessing.Pool(jobs) as pool, progress:
        runner = Runner(pool, progress)

        def capacity(scenario: Scenario, policy: str, predictor: PredictorMode = main, variant: Variant = BASE) -> None:
            key = ("search", scenario.key, policy, predictor, variant.key)
            hint = results.limits[scenario.key].capacity
            runner.submit(key, search, settings, scenario, policy, predictor, hint, variant)

        # vllm on the equal-rate scenarios first: their runs are queued as soon as it is known.
        for scenario in (PAPER, KVC):
            capacity(scenario, "vllm")
        for scenario in scenarios:
            for policy in HEADLINE:
                capacity(scenario, policy)
        for policy in ECOSERVE_VARIANTS:
            for scenario in (KVC, PAPER):
                capacity(scenario, policy)
        for mode in settings.predictor_modes:
            capacity(KVC, "ecoserve", mode)
        for variant in VARIANTS[1:]:
            for scenario in scenarios:
                for policy in SENSITIVE:
                    capacity(scenario, policy, main, variant)
        for rate in settings.goodput_rates:
            for policy in ("ecoserve", "distserve"):
                runner.submit(("goodput", rate, policy), smallest_clusters, settings, PAPER, policy, rate)

        for key, value in runner.results():
            kind, *rest = key
            if kind == "search":
                results.capacity[tuple(rest)] = value  # type: ignore[index]
                scenario_key, policy, predictor, variant_key = rest
                main_search = variant_key == BASE.key and predictor == main
                if policy == "vllm" and main_search and scenario_key in (PAPER.key, KVC.key):
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


@click.command()
@click.option("--quick", is_flag=True, help="smoke configuration: two scenarios, 150 requests, 15% search bracket")
@click.option("--jobs", type=int, default=2, show_default=True, help="processes for independent searches and runs")
@click.option("--num-requests", type=int, default=None, help="requests per run  [default: 4000, --quick 150]")
@click.option("--predictor", type=click.Choice(PREDICTOR_MODES), default="noisy", show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None,
    help="[default: docs/results.md; with --quick out/headline-quick/results.md]",
)
@click.option("--from-saved", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="write the report from a run's saved results (e.g. after editing docs/targets.md)")
def main(quick: bool, jobs: int, num_requests: int | None, predictor: PredictorMode, out: Path | None,
         from_saved: Path | None) -> None:
    """Compute the headline results and write them, with plots, to --out; the results themselves
    are saved beside it (results.pkl) so the report can be rewritten without rerunning."""
    if from_saved is not None:
        saved = pickle.loads(from_saved.read_bytes())
        quick = saved["quick"]
        out = out or Path(saved["out"])
        scenarios = QUICK_SCENARIOS if quick else SCENARIOS
        write_report(saved["results"], saved["settings"], scenarios, quick, saved["cost"], out, saved["command"])
        console.print(f"wrote {out} from {from_saved}")
        return
    noisy = noisy_available()
    if predictor == "noisy" and not noisy:
        raise click.UsageError("the noisy predictor's error model is missing; use --predictor oracle")
    settings = Settings(
        num_requests=num_requests or (150 if quick else 4000),
        predictor=predictor,
        rel_tol=0.15 if quick else 0.03,
        goodput_rates=(10.0,) if quick else (5.0, 10.0, 20.0),
        predictor_modes=tuple(m for m in PREDICTOR_MODES if noisy or m != "noisy"),  # type: ignore[misc]
        goodput_requests=150 if quick else 1000,
    )
    scenarios = QUICK_SCENARIOS if quick else SCENARIOS
    out = out or Path("out/headline-quick/results.md" if quick else "docs/results.md")
    command = " ".join([".venv/bin/python benchmarks/headline.py", shlex.join(sys.argv[1:])]).strip()
    start = time.perf_counter()
    results = evaluate(settings, scenarios, jobs)
    cost = f"{(time.perf_counter() - start) / 60:.1f} min wall and {cpu_seconds() / 60:.1f} min CPU with --jobs {jobs}"
    saved = Path("out/headline-quick" if quick else "out/headline") / "results.pkl"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(pickle.dumps({"results": results, "settings": settings, "quick": quick, "cost": cost,
                                    "out": str(out), "command": command}))
    write_report(results, settings, scenarios, quick, cost, out, command)
    console.print(f"wrote {out} and {out.parent / 'img'}/results_*.png: {cost}; results saved in {saved}")


if __name__ == "__main__":
    main()
