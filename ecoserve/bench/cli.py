"""`ecoserve bench`: replay a workload against a live server (OpenAI HTTP or the gateway's gRPC)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecoserve.bench.attempt import Attempt
from ecoserve.bench.backend import IGNORE_EOS_MODES
from ecoserve.bench.errors import BenchError
from ecoserve.bench.requests import build_requests, prompt_set_names
from ecoserve.bench.results import BenchResult, bench_result, write_outputs
from ecoserve.bench.run import DEFAULT_ADDRESS, PROTOCOLS, BenchRun, BenchTarget, run_bench
from ecoserve.predictor.errors import PredictorError
from ecoserve.workload import RequestSpec, workload_names

console = Console(stderr=True)


@click.command("bench")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="http", show_default=True)
@click.option("--base-url", help="server root URL (http) or host:port (grpc) "
              f"[default: {DEFAULT_ADDRESS['http']} / {DEFAULT_ADDRESS['grpc']}]")
@click.option("--model", help="model name to send [default: http: first of /v1/models; grpc: the gateway's]")
@click.option("--api-key", envvar="OPENAI_API_KEY",
              help="bearer token (HTTP header, gRPC metadata) [env: OPENAI_API_KEY]")
@click.option("--endpoint", type=click.Choice(["completions", "chat"]), default="completions", show_default=True)
@click.option("--workload", default="azure-conv", show_default=True,
              help=f"{', '.join(workload_names())}, a prompt set ({', '.join(prompt_set_names())}), or a trace file")
@click.option("--num-requests", type=int, default=200, show_default=True)
@click.option("--rate", type=float, help="requests/s (inf: all at once) [default: a timed trace's own timing]")
@click.option("--burstiness", type=float, default=1.0, show_default=True,
              help="Gamma shape of arrivals; 1 = Poisson (length and prompt sets)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output-len", type=int, help="ask every request for this many tokens [default: the workload's]")
@click.option("--tokenizer",
              help="served model's tokenizer.json or directory: exact synthetic prompt lengths, prompt-set counts")
@click.option("--ignore-eos", type=click.Choice(IGNORE_EOS_MODES), default="auto", show_default=True,
              help="auto: send ignore_eos if the server accepts it")
@click.option("--max-concurrency", type=int, help="at most this many requests in flight [default: no limit]")
@click.option("--max-duration", type=float, default=3600.0, show_default=True,
              help="stop after this many seconds, counting what was cut")
@click.option("--ttft-slo", type=float, default=2.0, show_default=True, help="seconds, for goodput")
@click.option("--tpot-slo", type=float, default=0.1, show_default=True, help="seconds, for goodput")
@click.option("--label", help="name of this run in reports [default: the model]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="write summary.json, report.md and plots here")
def bench(**kw: Any) -> None:
    """Replay a workload against a server and report vLLM's serving-benchmark metrics."""
    if not kw["max_duration"] > 0 or (kw["max_concurrency"] is not None and kw["max_concurrency"] < 1):
        raise click.UsageError("--max-duration must be > 0 and --max-concurrency >= 1")
    try:
        specs = build_requests(kw["workload"], kw["num_requests"], kw["rate"], seed=kw["seed"],
                               burstiness=kw["burstiness"], output_len=kw["output_len"], tokenizer=kw["tokenizer"])
    except (ValueError, PredictorError) as err:
        raise click.UsageError(str(err)) from err
    target = BenchTarget(kw["protocol"], kw["base_url"] or DEFAULT_ADDRESS[kw["protocol"]], kw["model"], kw["api_key"],
                         kw["endpoint"], kw["ignore_eos"])
    try:
        run = _run_with_progress(specs, target, kw)
    except BenchError as err:
        raise click.ClickException(str(err)) from err
    offered = _offered_rate(specs)
    result = bench_result(run.attempts, kw["label"] or run.model or "gateway", kw["rate"] or offered,
                          kw["ttft_slo"], kw["tpot_slo"])
    meta = _meta(kw, target, run, offered)
    _print(result)
    if kw["out_dir"] is not None:
        names = write_outputs(kw["out_dir"], result, meta)
        console.print(f"wrote {', '.join(str(kw['out_dir'] / n) for n in names)}")


def _run_with_progress(specs: list[RequestSpec], target: BenchTarget, kw: dict[str, Any]) -> BenchRun:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("requests", total=len(specs))
        failed = 0

        def done(a: Attempt) -> None:
            nonlocal failed
            failed += a.error is not None
            bar.update(task, advance=1, description=f"requests ({failed} failed)")

        return asyncio.run(run_bench(specs, target, max_duration=kw["max_duration"],
                                     max_concurrency=kw["max_concurrency"], on_done=done))


def _offered_rate(specs: list[RequestSpec]) -> float:
    """Mean rate the arrival times ask for: (n - 1) / span; inf when all arrive at once."""
    span = specs[-1].arrival - specs[0].arrival
    return (len(specs) - 1) / span if span > 0 else float("inf")


def _json_rate(rate: float | None) -> float | str | None:
    """JSON has no infinity; an all-at-once rate is written "inf"."""
    return "inf" if rate == float("inf") else rate


def _meta(kw: dict[str, Any], target: BenchTarget, run: BenchRun, offered: float) -> dict[str, Any]:
    sent = [a.sent - a.scheduled for a in run.attempts if a.sent is not None]
    return {
        "workload": kw["workload"], "protocol": target.protocol, "address": target.address,
        "endpoint": target.endpoint, "model": run.model, "ignore_eos": run.ignore_eos,
        "num_requests": kw["num_requests"], "rate": _json_rate(kw["rate"]), "offered_rate": _json_rate(offered),
        "burstiness": kw["burstiness"], "seed": kw["seed"],
        "output_len": kw["output_len"], "max_concurrency": kw["max_concurrency"], "max_duration_s": kw["max_duration"],
        "ttft_slo_s": kw["ttft_slo"], "tpot_slo_s": kw["tpot_slo"], "wall_s": round(run.wall_s, 3),
        "send_lag_max_s": round(max(sent), 4) if sent else None,
    }


def _print(result: BenchResult) -> None:
    s = result.summary
    table = Table(title=f"serving benchmark: {s.policy}", show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    rows = [
        ("completed / failed / not sent", f"{s.completed} / {result.failed} / {result.not_sent}"),
        ("duration", f"{s.duration:.2f} s"),
        ("request throughput", f"{s.throughput_rps:.2f} req/s"),
        ("output token throughput", f"{s.output_token_throughput:.1f} tok/s"),
        ("input / output tokens", f"{result.input_tokens} / {result.output_tokens}"),
        ("outputs shorter than asked", str(result.short_outputs)),
        ("TTFT p50 / p99", f"{s.ttft_p50 * 1e3:.1f} / {s.ttft_p99 * 1e3:.1f} ms"),
        ("TPOT p50 / p99", f"{s.tpot_p50 * 1e3:.1f} / {s.tpot_p99 * 1e3:.1f} ms"),
        ("ITL p99", f"{s.itl_p99 * 1e3:.1f} ms"),
        ("E2E p50 / p99", f"{s.e2e_p50:.3f} / {s.e2e_p99:.3f} s"),
        ("SLO attainment", f"{100 * s.slo_attainment:.1f} %"),
        ("goodput", f"{s.goodput_rps:.2f} req/s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
    for err, n in list(result.errors.items())[:5]:
        console.print(f"[red]{n} failed:[/red] {err}")
