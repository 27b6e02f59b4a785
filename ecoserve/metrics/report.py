"""Run results as summary.json (for machines) and report.md (for people)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecoserve.metrics.summary import RunSummary


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays that callers put in meta."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_summary_json(
    path: str | Path,
    results: Sequence[RunSummary],
    capacity: dict[str, float] | None,
    meta: dict[str, Any],
) -> None:
    """{"meta": ..., "results": [one object per (policy, rate)], "capacity": {policy: rps} | null}.

    Strict JSON: NaN in results becomes null; NaN anywhere else is an error, not invalid output.
    """
    doc = {
        "meta": meta,
        "results": [r.to_dict() for r in results],
        "capacity": capacity,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, allow_nan=False, default=_jsonable) + "\n")


# (header, getter) per column; latencies in ms except E2E/JCT in s, shares in %.
_COLUMNS: list[tuple[str, Callable[[RunSummary], float]]] = [
    ("req/s", lambda r: r.throughput_rps),
    ("tok/s", lambda r: r.output_token_throughput),
    ("TTFT p50 ms", lambda r: r.ttft_p50 * 1e3),
    ("TTFT p99 ms", lambda r: r.ttft_p99 * 1e3),
    ("TPOT p50 ms", lambda r: r.tpot_p50 * 1e3),
    ("TPOT p99 ms", lambda r: r.tpot_p99 * 1e3),
    ("ITL p99 ms", lambda r: r.itl_p99 * 1e3),
    ("E2E p50 s", lambda r: r.e2e_p50),
    ("E2E p99 s", lambda r: r.e2e_p99),
    ("JCT mean s", lambda r: r.jct_mean),
    ("SLO %", lambda r: r.slo_attainment * 100),
    ("goodput req/s", lambda r: r.goodput_rps),
    ("preempt", lambda r: r.preemptions),
    ("overruns", lambda r: r.overruns),
    ("KV util %", lambda r: r.kv_util_mean * 100),
    ("sched us/iter", lambda r: r.sched_us_per_iter),
]


def _cell(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "n/a" if not math.isfinite(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _table(key: str, label: Callable[[RunSummary], str], rows: Sequence[RunSummary]) -> list[str]:
    head = [key] + [h for h, _ in _COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([label(r)] + [_cell(get(r)) for _, get in _COLUMNS]) + " |")
    return lines + [""]


def write_report_md(
    path: str | Path,
    results: Sequence[RunSummary],
    capacity: dict[str, float] | None,
    meta: dict[str, Any],
) -> None:
    """Markdown: meta, capacity per policy, then one table per rate and one per policy."""
    lines = ["# EcoServe run report", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    if capacity is not None:
        lines += ["## Capacity", "", "| policy | capacity req/s |", "|---|---|"]
        lines += [f"| {p} | {_cell(c)} |" for p, c in capacity.items()] + [""]
    lines += ["## By rate", ""]
    for rate in sorted({r.rate for r in results}):
        lines += [f"### {rate:g} req/s", ""]
        lines += _table("policy", lambda r: r.policy, [r for r in results if r.rate == rate])
    lines += ["## By policy", ""]
    for policy in dict.fromkeys(r.policy for r in results):
        lines += [f"### {policy}", ""]
        rows = sorted((r for r in results if r.policy == policy), key=lambda r: r.rate)
        lines += _table("rate", lambda r: f"{r.rate:g}", rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
