"""`ecoserve simulate`: compare policies on a workload, at given rates or by capacity search."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ecoserve.core.cost_model import CostModel
from ecoserve.core.hardware import GPUS, MODELS
from ecoserve.core.placement import ROUTER_NAMES
from ecoserve.core.policies import POLICY_NAMES, PolicyOptions
from ecoserve.core.request import Slo
from ecoserve.metrics import (
    CapacityResult,
    Criterion,
    Limit,
    RunSummary,
    capacity_notes,
    search_capacity,
    write_report_md,
    write_summary_json,
)
from ecoserve.metrics.console import capacity_table, runs_table
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment, describe_requests
from ecoserve.sim.options import check_options
from ecoserve.sim.predictions import PREDICTOR_MODES
from ecoserve.sim.simulator import OVERLONG_MODES
from ecoserve.workload import Workload, workload_names

console = Console(stderr=True)
POSITIVE = click.FloatRange(min=0, min_open=True)
AT_LEAST_ONE = click.IntRange(min=1)


@click.command("simulate")
@click.option("--workload", default="azure-conv", show_default=True, help=f"{', '.join(workload_names())}, or a trace file")
@click.option("--model", type=click.Choice(sorted(MODELS)), default="llama-2-7b", show_default=True)
@click.option("--gpu", type=click.Choice(sorted(GPUS)), default="a100-40gb", show_default=True)
@click.option("--tp", type=AT_LEAST_ONE, default=1, show_default=True, help="tensor-parallel degree")
@click.option("--policy", "policies", multiple=True, type=click.Choice(POLICY_NAMES), default=("ecoserve", "vllm"), show_default=True)
@click.option("--rate", "rates", multiple=True, type=POSITIVE, help="requests/s offered (repeatable)")
@click.option("--capacity", is_flag=True, help="search each policy's capacity instead of fixed rates")
@click.option("--criterion", type=click.Choice(["slo", "itl"]), default="slo", show_default=True)
@click.option("--e2e-bound", type=POSITIVE, default=None, help="P99 E2E bound in s (default: 99% of requests within their own E2E deadline)")
@click.option("--itl-bound", type=POSITIVE, default=0.1, show_default=True, help="itl criterion: P99 ITL bound in s")
@click.option("--slo-target", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True, help="required SLO attainment")
@click.option("--num-requests", type=AT_LEAST_ONE, default=1000, show_default=True)
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="first trace row (timed traces) or shuffle position (length sets): disjoint slices")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--burstiness", type=POSITIVE, default=1.0, show_default=True, help="Gamma shape of arrivals (length sets)")
@click.option("--overlong", type=click.Choice(OVERLONG_MODES), default="reject", show_default=True,
              help="requests longer than the model's context: refused at arrival and counted as misses "
                   "(reject, as a server answers 400), passed over before the run (drop), or prompt cut to fit (truncate)")
@click.option("--spread-ties/--keep-ties", default=True, show_default=True,
              help="spread arrivals that share a timestamp within the trace's timestamp resolution")
@click.option("--predictor", type=click.Choice(PREDICTOR_MODES), default="noisy", show_default=True)
@click.option("--ttft-slo", type=POSITIVE, default=2.0, show_default=True, help="seconds")
@click.option("--tpot-slo", type=POSITIVE, default=0.1, show_default=True, help="seconds")
@click.option("--num-workers", type=AT_LEAST_ONE, default=1, show_default=True)
@click.option("--router", type=click.Choice(ROUTER_NAMES), default=None,
              help="which worker serves a request  [default: ecoserve's late-binding placement for ecoserve policies, "
                   "round-robin for baselines]")
@click.option("--kv-blocks", type=AT_LEAST_ONE, default=None, help="override each worker's KV capacity (blocks of 16 tokens)")
@click.option("--token-budget", type=AT_LEAST_ONE, default=None, help="baselines' max_num_batched_tokens (default: their real default)")
@click.option("--max-num-seqs", type=AT_LEAST_ONE, default=None)
@click.option("--watermark", type=click.FloatRange(0, 1, max_open=True), default=None, help="share of KV blocks kept free at admission")
@click.option("--overflow-probability", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="ecoserve's KV admission: accepted chance of running out of KV  [default: 0.05]")
@click.option("--iteration-target", type=click.FloatRange(min=0), default=0.09, show_default=True, help="per-iteration time budget, s (ecoserve, vllm-budget)")
@click.option("--prefill-workers", type=AT_LEAST_ONE, default=1, show_default=True, help="distserve")
@click.option("--decode-workers", type=AT_LEAST_ONE, default=1, show_default=True, help="distserve")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/simulate"), show_default=True)
@click.pass_context
def simulate(ctx: click.Context, **kw: Any) -> None:
    """Simulate policies on a workload and write summary.json, report.md and plots to --out."""
    if not kw["rates"] and not kw["capacity"]:
        raise click.UsageError("give --rate (repeatable) or --capacity")
    given = [n for n in kw if ctx.get_parameter_source(n) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)]
    errors, warnings = check_options(given, kw, kw["policies"])
    if errors:
        raise click.UsageError("; ".join(errors))
    try:
        CostModel.load(kw["model"], kw["gpu"], kw["tp"])
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    exp = _experiment(kw)
    selected, limit = _check_workload(exp, kw, given, warnings)
    notes = describe_requests(exp, selected)
    for line in warnings:
        console.print(f"[yellow]warning:[/yellow] {line}")
    for line in notes:
        console.print(line)
    sweep = _run(exp, kw, limit)
    meta = _meta(exp, kw, limit, selected, sweep)
    out: Path = kw["out_dir"]
    out.mkdir(parents=True, exist_ok=True)
    capacity = sweep.capacity if kw["capacity"] else None
    write_summary_json(out / "summary.json", sweep.runs, capacity, meta)
    write_report_md(out / "report.md", sweep.runs, capacity, meta, notes, limit.capacity)
    from ecoserve.metrics.plots import plot_kv_util, plot_latency_vs_rate

    slo = exp.cluster.slo
    curves = sweep.runs or [p.summary for found in sweep.capacity.values() for p in found.probes]
    target = kw["slo_target"] if kw["capacity"] else None
    plot_latency_vs_rate(curves, out / "latency_vs_rate.png", slo.ttft, slo.tpot, target)
    plot_kv_util(sweep.timelines, out / "kv_util.png")
    _print(sweep, limit, capacity)
    console.print(f"wrote {out}/summary.json, report.md, latency_vs_rate.png, kv_util.png")


def _check_workload(exp: Experiment, kw: dict[str, Any], given: list[str], warnings: list[str]) -> tuple[Workload, Limit]:
    """The rows the runs will use (the same at any rate) and the limit, or a usage error."""
    try:
        selected = exp.select(kw["rates"][0] if kw["rates"] else 1.0)
        limit = exp.limit()
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    if "spread_ties" in given and not kw["spread_ties"] and selected.tied == 0:
        warnings.append("--keep-ties: no two requests of this workload share an arrival stamp")
    rejected = exp.over_context(selected.specs) if exp.overlong == "reject" else 0
    if kw["capacity"] and len(selected.specs) - rejected < kw["slo_target"] * len(selected.specs):
        raise click.UsageError(
            f"{rejected} of {len(selected.specs)} requests exceed the {exp.max_len}-token context and are rejected, "
            f"so SLO attainment cannot reach --slo-target {kw['slo_target']:g} at any rate: choose a model with "
            "a longer context, or --overlong drop or truncate"
        )
    return selected, limit


def _experiment(kw: dict[str, Any]) -> Experiment:
    cluster = ClusterConfig(
        model=kw["model"], gpu=kw["gpu"], tp=kw["tp"], num_workers=kw["num_workers"],
        router=kw["router"], kv_blocks=kw["kv_blocks"],
        slo=Slo(ttft=kw["ttft_slo"], tpot=kw["tpot_slo"]),
        options=PolicyOptions(
            token_budget=kw["token_budget"], max_num_seqs=kw["max_num_seqs"],
            watermark=kw["watermark"], iteration_target=kw["iteration_target"],
            overflow_probability=kw["overflow_probability"],
        ),
        prefill_workers=kw["prefill_workers"], decode_workers=kw["decode_workers"],
    )
    return Experiment(
        workload=kw["workload"], num_requests=kw["num_requests"], seed=kw["seed"],
        burstiness=kw["burstiness"], predictor=kw["predictor"], cluster=cluster, start=kw["start"],
        overlong=kw["overlong"], spread_ties=kw["spread_ties"],
    )


@dataclass(slots=True)
class Sweep:
    runs: list[RunSummary] = field(default_factory=list)  # the --rate runs
    capacity: dict[str, CapacityResult] = field(default_factory=dict)
    timelines: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _run(exp: Experiment, kw: dict[str, Any], limit: Limit) -> Sweep:
    sweep = Sweep()
    policies: tuple[str, ...] = kw["policies"]
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        if kw["capacity"]:
            criterion = Criterion(name=kw["criterion"], e2e_p99_bound=kw["e2e_bound"],
                                  itl_p99_bound=kw["itl_bound"], slo_target=kw["slo_target"])
            for policy in policies:
                sweep.capacity[policy] = _search(exp, policy, criterion, limit.capacity, bar, sweep)
        for rate in kw["rates"]:
            for policy in policies:
                task = bar.add_task(f"{policy} at {rate:g} req/s", total=exp.num_requests)
                result = exp.run(policy, rate, progress=lambda n, t=task: bar.advance(t, n))
                sweep.runs.append(result.summary(policy, rate))
                sweep.timelines[f"{policy} @ {rate:g}"] = result.kv_timeline
                bar.remove_task(task)
    return sweep


def _search(exp: Experiment, policy: str, criterion: Criterion, hint: float, bar: Progress, sweep: Sweep) -> CapacityResult:
    """search_capacity with a bar per probe (its number and rate); keeps the KV timeline of the
    run at the capacity found (or of the lowest rate tried, if none met)."""
    task = bar.add_task(policy, total=exp.num_requests)
    timelines: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(rate: float) -> tuple[RunSummary, list]:
        bar.reset(task, total=exp.num_requests,
                  description=f"capacity of {policy}: probe {len(timelines) + 1} at {rate:.3g} req/s")
        result = exp.run(policy, rate, progress=lambda n: bar.advance(task, n))
        timelines[rate] = result.kv_timeline
        return result.summary(policy, rate), result.records

    found = search_capacity(evaluate, criterion, hint)
    bar.remove_task(task)
    shown = found.capacity if found.capacity > 0 else min(timelines)
    sweep.timelines[f"{policy} @ {shown:.3g} ({'capacity' if found.capacity > 0 else 'lowest probe'})"] = timelines[shown]
    return found


def _meta(exp: Experiment, kw: dict[str, Any], limit: Limit, selected: Workload, sweep: Sweep) -> dict[str, Any]:
    over = exp.over_context(selected.specs)
    meta: dict[str, Any] = {
        "workload": exp.workload, "num_requests": exp.num_requests, "start": exp.start, "model": exp.cluster.model,
        "max_model_len": exp.max_len, "gpu": exp.cluster.gpu, "tp": exp.cluster.tp,
        "num_workers": exp.cluster.num_workers, "router": exp.cluster.router or "each policy's own", "predictor": exp.predictor, "seed": exp.seed,
        "slo_ttft_s": exp.cluster.slo.ttft, "slo_tpot_s": exp.cluster.slo.tpot,
        "overlong": exp.overlong, "overlong_requests": over if exp.overlong != "drop" else 0,
        "overlong_rows_passed_over": selected.skipped_overlong,
        "rates_cover": "the requests that run" if exp.overlong == "drop" else "every offered request (rejected ones included)",
        "tied_arrivals": selected.tied, "ties_spread_within_s": selected.tie_resolution,
        "limit_rps": round(limit.capacity, 3), "limit_binding": limit.binding,
    }
    if kw["capacity"]:
        meta["criterion"] = kw["criterion"]
        meta["capacity_share_of_limit"] = {p: round(c.capacity / limit.capacity, 3) for p, c in sweep.capacity.items()}
        meta["capacity_lower_bound"] = [p for p, c in sweep.capacity.items() if c.lower_bound]
        meta["capacity_above_limit"] = [p for p, c in sweep.capacity.items() if c.capacity > limit.capacity]
    return meta


def _print(sweep: Sweep, limit: Limit, capacity: dict[str, CapacityResult] | None) -> None:
    out = Console()
    if sweep.runs:
        out.print(runs_table(sweep.runs))
    if capacity:
        for policy, found in capacity.items():
            probes = [p.summary for p in found.probes_by_rate()]
            out.print(runs_table(probes, title=f"capacity probes of {policy}, by rate"))
        out.print(capacity_table(capacity, limit.capacity))
        for note in capacity_notes(capacity, limit.capacity):
            out.print(f"note: {note}")
