"""`ecoserve simulate`: compare policies on a workload, at given rates or by capacity search."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecoserve.core.hardware import GPUS, MODELS
from ecoserve.core.policies import POLICY_NAMES, PolicyOptions
from ecoserve.core.request import Slo
from ecoserve.metrics import Criterion, RunSummary, write_report_md, write_summary_json
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.sim.predictions import PREDICTOR_MODES
from ecoserve.workload import workload_names

console = Console(stderr=True)


@click.command("simulate")
@click.option("--workload", default="azure-conv", show_default=True, help=f"{', '.join(workload_names())}, or a trace file")
@click.option("--model", type=click.Choice(sorted(MODELS)), default="llama-2-7b", show_default=True)
@click.option("--gpu", type=click.Choice(sorted(GPUS)), default="a100-40gb", show_default=True)
@click.option("--tp", type=int, default=1, show_default=True, help="tensor-parallel degree")
@click.option("--policy", "policies", multiple=True, type=click.Choice(POLICY_NAMES), default=("ecoserve", "vllm"), show_default=True)
@click.option("--rate", "rates", multiple=True, type=float, help="requests/s (repeatable)")
@click.option("--capacity", is_flag=True, help="search each policy's capacity instead of fixed rates")
@click.option("--criterion", type=click.Choice(["slo", "itl"]), default="slo", show_default=True)
@click.option("--e2e-bound", type=float, default=None, help="P99 E2E bound in s (default: 99% of requests within their own E2E deadline)")
@click.option("--itl-bound", type=float, default=0.1, show_default=True, help="itl criterion: P99 ITL bound in s")
@click.option("--slo-target", type=float, default=0.9, show_default=True, help="required SLO attainment")
@click.option("--num-requests", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--burstiness", type=float, default=1.0, show_default=True, help="Gamma shape of arrivals (length sets)")
@click.option("--predictor", type=click.Choice(PREDICTOR_MODES), default="noisy", show_default=True)
@click.option("--ttft-slo", type=float, default=2.0, show_default=True, help="seconds")
@click.option("--tpot-slo", type=float, default=0.1, show_default=True, help="seconds")
@click.option("--num-workers", type=int, default=1, show_default=True)
@click.option("--dispatcher", type=click.Choice(["least-kv", "round-robin"]), default="least-kv", show_default=True)
@click.option("--kv-blocks", type=int, default=None, help="override each worker's KV capacity (blocks of 16 tokens)")
@click.option("--token-budget", type=int, default=None, help="baselines' max_num_batched_tokens (default: their real default)")
@click.option("--max-num-seqs", type=int, default=None)
@click.option("--watermark", type=float, default=None)
@click.option("--iteration-target", type=float, default=0.09, show_default=True, help="EcoServe's per-iteration time budget, s")
@click.option("--prefill-workers", type=int, default=1, show_default=True, help="distserve")
@click.option("--decode-workers", type=int, default=1, show_default=True, help="distserve")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/simulate"), show_default=True)
def simulate(**kw: object) -> None:
    """Simulate policies on a workload and write summary.json, report.md and plots to --out."""
    rates: tuple[float, ...] = kw["rates"]  # type: ignore[assignment]
    if not rates and not kw["capacity"]:
        raise click.UsageError("give --rate (repeatable) or --capacity")
    cluster = ClusterConfig(
        model=kw["model"], gpu=kw["gpu"], tp=kw["tp"], num_workers=kw["num_workers"],  # type: ignore[arg-type]
        dispatcher=kw["dispatcher"], kv_blocks=kw["kv_blocks"],  # type: ignore[arg-type]
        slo=Slo(ttft=kw["ttft_slo"], tpot=kw["tpot_slo"]),  # type: ignore[arg-type]
        options=PolicyOptions(
            token_budget=kw["token_budget"], max_num_seqs=kw["max_num_seqs"],  # type: ignore[arg-type]
            watermark=kw["watermark"], iteration_target=kw["iteration_target"],  # type: ignore[arg-type]
        ),
        prefill_workers=kw["prefill_workers"], decode_workers=kw["decode_workers"],  # type: ignore[arg-type]
    )
    exp = Experiment(
        workload=kw["workload"], num_requests=kw["num_requests"], seed=kw["seed"],  # type: ignore[arg-type]
        burstiness=kw["burstiness"], predictor=kw["predictor"], cluster=cluster,  # type: ignore[arg-type]
    )
    try:
        results, capacity, timelines, meta = _run(exp, kw)
    except ValueError as err:
        raise click.UsageError(str(err)) from err
    out: Path = kw["out_dir"]  # type: ignore[assignment]
    out.mkdir(parents=True, exist_ok=True)
    write_summary_json(out / "summary.json", results, capacity, meta)
    write_report_md(out / "report.md", results, capacity, meta)
    from ecoserve.metrics.plots import plot_kv_util, plot_latency_vs_rate

    plot_latency_vs_rate(results, out / "latency_vs_rate.png")
    plot_kv_util(timelines, out / "kv_util.png")
    _print_table(results, capacity)
    console.print(f"wrote {out}/summary.json, report.md, latency_vs_rate.png, kv_util.png")


def _run(exp: Experiment, kw: dict[str, object]):  # type: ignore[no-untyped-def]
    policies: tuple[str, ...] = kw["policies"]  # type: ignore[assignment]
    results: list[RunSummary] = []
    timelines = {}
    limit = exp.limit()
    meta: dict[str, object] = {
        "workload": exp.workload, "num_requests": exp.num_requests, "model": exp.cluster.model,
        "gpu": exp.cluster.gpu, "tp": exp.cluster.tp, "num_workers": exp.cluster.num_workers,
        "predictor": exp.predictor, "seed": exp.seed, "slo_ttft_s": exp.cluster.slo.ttft,
        "slo_tpot_s": exp.cluster.slo.tpot, "limit_rps": round(limit.capacity, 3),
        "limit_binding": limit.binding,
    }
    capacity: dict[str, float] | None = None
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        if kw["capacity"]:
            criterion = Criterion(
                name=kw["criterion"], e2e_p99_bound=kw["e2e_bound"],  # type: ignore[arg-type]
                itl_p99_bound=kw["itl_bound"], slo_target=kw["slo_target"],  # type: ignore[arg-type]
            )
            meta["criterion"] = criterion.name
            capacity = {}
            task = bar.add_task("capacity search", total=len(policies))
            for policy in policies:
                bar.update(task, description=f"capacity of {policy}")
                found = exp.capacity(policy, criterion, hint=limit.capacity)
                capacity[policy] = found.capacity
                results += [p.summary for p in found.probes]
                bar.advance(task)
            meta["capacity_share_of_limit"] = {p: round(c / limit.capacity, 3) for p, c in capacity.items()}
        rates: tuple[float, ...] = kw["rates"]  # type: ignore[assignment]
        for rate in rates:
            for policy in policies:
                task = bar.add_task(f"{policy} @ {rate:g} req/s", total=exp.num_requests)
                result = exp.run(policy, rate, progress=lambda n, t=task: bar.advance(t, n))
                results.append(result.summary(policy, rate))
                timelines[f"{policy} @ {rate:g}"] = result.kv_timeline
                bar.remove_task(task)
    return results, capacity, timelines, meta


def _print_table(results: list[RunSummary], capacity: dict[str, float] | None) -> None:
    table = Table(title="simulation")
    cols = ["policy", "rate", "req/s", "TTFT p99", "TPOT p99", "ITL p99", "E2E p99", "JCT mean", "SLO %", "preempt", "KV %"]
    for c in cols:
        table.add_column(c, justify="right")
    for r in results:
        table.add_row(
            r.policy, f"{r.rate:.3g}", f"{r.throughput_rps:.2f}", f"{r.ttft_p99:.2f}", f"{r.tpot_p99 * 1e3:.0f}ms",
            f"{r.itl_p99 * 1e3:.0f}ms", f"{r.e2e_p99:.1f}", f"{r.jct_mean:.1f}", f"{100 * r.slo_attainment:.1f}",
            str(r.preemptions), f"{100 * r.kv_util_mean:.0f}",
        )
    Console().print(table)
    if capacity:
        Console().print(json.dumps(capacity, indent=2))
