"""Attempts to numbers: the shared RequestRecord/summarize definitions for completed requests,
plus what only a live run has (failures by error, requests never sent, short outputs)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecoserve.bench.attempt import Attempt
from ecoserve.metrics import RequestRecord, RunSummary, summarize

# RunSummary fields only a simulator or the server knows: null in a client's row, not 0.
SIMULATOR_ONLY = ("preemptions", "overruns", "kv_util_mean", "sched_us_per_iter", "sim_speedup")


def token_gaps(times: Sequence[float], output_len: int) -> np.ndarray:
    """ITL gaps of one request: `output_len - 1` of them, or none when they cannot be known.

    When the server reports more tokens than text chunks arrived (several tokens in one chunk,
    or text held back until a character is complete), the missing tokens reached the client
    together with a chunk, a gap of 0. More chunks than tokens: unmeasured (empty).
    """
    gaps = np.diff(np.asarray(times, dtype=np.float64))
    if len(times) > output_len:
        return np.empty(0)
    return np.concatenate([gaps, np.zeros(output_len - len(times))])


def to_record(a: Attempt, ttft_slo: float, tpot_slo: float) -> RequestRecord:
    """A completed attempt as the metrics package's record; output length from the server's usage."""
    assert a.completed and a.sent is not None and a.finish is not None
    output_len = a.completion_tokens or len(a.token_times)
    return RequestRecord(
        arrival=a.sent,
        first_token=a.token_times[0],
        finish=a.finish,
        prompt_len=a.prompt_tokens or a.spec.prompt_len,
        output_len=output_len,
        ttft_slo=ttft_slo,
        tpot_slo=tpot_slo,
        itl=token_gaps(a.token_times, output_len),
    )


@dataclass(frozen=True)
class BenchResult:
    """One run: the summary of completed requests and the accounting of the rest."""

    summary: RunSummary
    records: list[RequestRecord]
    attempts: list[Attempt]
    failed: int
    not_sent: int
    errors: dict[str, int]
    short_outputs: int
    input_tokens: int
    output_tokens: int


def bench_result(attempts: Sequence[Attempt], label: str, rate: float, ttft_slo: float, tpot_slo: float) -> BenchResult:
    """Records for the completed attempts; SLO attainment is over the requests sent (failures miss)."""
    done = [a for a in attempts if a.completed]
    records = [to_record(a, ttft_slo, tpot_slo) for a in done]
    failed = [a for a in attempts if a.failed]
    summary = summarize(records, label, rate, num_requests=len(done) + len(failed))
    return BenchResult(
        summary=summary,
        records=records,
        attempts=list(attempts),
        failed=len(failed),
        not_sent=sum(a.sent is None for a in attempts),
        errors=dict(Counter(a.error for a in failed if a.error).most_common()),
        short_outputs=sum(r.output_len < a.spec.output_len for r, a in zip(records, done, strict=True)),
        input_tokens=sum(r.prompt_len for r in records),
        output_tokens=sum(r.output_len for r in records),
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def summary_doc(result: BenchResult, meta: dict[str, Any]) -> dict[str, Any]:
    """summary.json: vLLM-style top-level numbers (seconds, per second), the errors, the meta, and
    the run as a RunSummary row (`results`, the format `ecoserve simulate` writes, with the
    fields a client cannot measure set to null)."""
    s = result.summary
    per_s = 1.0 / s.duration if s.duration > 0 else 0.0
    doc: dict[str, Any] = {
        "num_requests": len(result.attempts),
        "completed": s.completed,
        "failed": result.failed,
        "not_sent": result.not_sent,
        "duration_s": s.duration,
        "request_throughput": s.throughput_rps,
        "output_token_throughput": s.output_token_throughput,
        "total_token_throughput": (result.input_tokens + result.output_tokens) * per_s,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "short_outputs": result.short_outputs,
    }
    for name in ("ttft", "tpot", "e2e"):
        for p in ("p50", "p90", "p99"):
            doc[f"{name}_{p}"] = _finite(getattr(s, f"{name}_{p}"))
    doc |= {
        "itl_p99": _finite(s.itl_p99),
        "e2e_mean": _finite(s.jct_mean),
        "slo_attainment": s.slo_attainment,
        "goodput_rps": s.goodput_rps,
        "errors": result.errors,
        "meta": meta,
        "results": [s.to_dict() | dict.fromkeys(SIMULATOR_ONLY)],
    }
    return doc


def write_outputs(out: Path, result: BenchResult, meta: dict[str, Any]) -> list[str]:
    """summary.json, report.md and the plots in `out`; returns the file names written."""
    from ecoserve.bench.plots import plot_latency_cdf, plot_timeline
    from ecoserve.bench.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary_doc(result, meta), indent=2, allow_nan=False) + "\n")
    write_report(out / "report.md", result, meta)
    plot_latency_cdf(result.records, out / "latency_cdf.png")
    plot_timeline(result.attempts, result.records, out / "timeline.png")
    return ["summary.json", "report.md", "latency_cdf.png", "timeline.png"]
