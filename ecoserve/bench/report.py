"""report.md of one benchmark run.

Not ecoserve.metrics.write_report_md: its tables carry the simulator's own columns (preemptions,
overruns, KV utilization, scheduler time), which a client cannot measure and would print as 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ecoserve.bench.results import BenchResult


def _ms(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * 1e3:.1f} ms"


def _s(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.3f} s"


def write_report(path: Path, result: BenchResult, meta: dict[str, Any]) -> None:
    """Run settings, the counts, the metrics (vLLM's benchmark names), and the failures by error."""
    s = result.summary
    rows = [
        ("requests completed / failed / not sent", f"{s.completed} / {result.failed} / {result.not_sent}"),
        ("outputs shorter than asked", str(result.short_outputs)),
        ("duration (first send to last token)", _s(s.duration)),
        ("request throughput", f"{s.throughput_rps:.3f} req/s"),
        ("output token throughput", f"{s.output_token_throughput:.1f} tok/s"),
        ("input / output tokens", f"{result.input_tokens} / {result.output_tokens}"),
        ("TTFT p50 / p90 / p99", " / ".join(_ms(v) for v in (s.ttft_p50, s.ttft_p90, s.ttft_p99))),
        ("TPOT p50 / p90 / p99", " / ".join(_ms(v) for v in (s.tpot_p50, s.tpot_p90, s.tpot_p99))),
        ("ITL p99", _ms(s.itl_p99)),
        ("E2E p50 / p90 / p99", " / ".join(_s(v) for v in (s.e2e_p50, s.e2e_p90, s.e2e_p99))),
        ("E2E mean", _s(s.jct_mean)),
        ("SLO attainment (of requests sent)", f"{100 * s.slo_attainment:.1f} %"),
        ("goodput", f"{s.goodput_rps:.3f} req/s"),
    ]
    lines = [f"# Serving benchmark: {s.policy}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()] + ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows] + [""]
    if result.errors:
        lines += ["## Failed requests", "", "| count | error |", "|---|---|"]
        lines += [f"| {n} | {' '.join(err.split()).replace('|', '/')} |" for err, n in result.errors.items()]
        lines.append("")
    path.write_text("\n".join(lines))
