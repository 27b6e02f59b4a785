"""Run results as summary.json (for machines) and report.md (for people)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ecoserve.metrics.capacity import CapacityResult, capacity_notes
from ecoserve.metrics.summary import RunSummary


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays that callers put in meta."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_summary_json(
    path: str | Path,
    results: Sequence[RunSummary],
    capacity: dict[str, CapacityResult] | None,
    meta: dict[str, Any],
) -> None:
    """{"meta", "results": [one object per (policy, rate) run], "capacity": {policy: rps} | null,
    "capacity_bracket": {policy: [met, failed | null]}, "capacity_probes": {policy: [runs, rate order,
    each with "met"]}}. A null upper end: no rate tried failed, so the capacity is a lower bound.

    Strict JSON: NaN in results becomes null; NaN anywhere else is an error, not invalid output.
    """
    doc: dict[str, Any] = {"meta": meta, "results": [r.to_dict() for r in results], "capacity": None}
    if capacity is not None:
        doc["capacity"] = {p: c.capacity for p, c in capacity.items()}
        doc["capacity_bracket"] = {p: list(c.bracket) for p, c in capacity.items()}
        doc["capacity_probes"] = {
            p: [{**probe.summary.to_dict(), "met": probe.met} for probe in c.probes_by_rate()]
            for p, c in capacity.items()
        }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, allow_nan=False, default=_jsonable) + "\n")


# (header, getter) per column; latencies in ms except E2E/JCT in s, shares in %.
_COLUMNS: list[tuple[str, Callable[[RunSummary], float]]] = [
    ("offered", lambda r: r.num_requests),
    ("completed", lambda r: r.completed),
    ("rejected", lambda r: r.rejected),
    ("refused", lambda r: r.refused),
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
    ("prefix hit %", lambda r: r.prefix_hit_rate * 100),
    ("sched us/iter", lambda r: r.sched_us_per_iter),
]

# What the less obvious columns count; printed under the tables.
COLUMN_NOTES = (
    "offered: requests sent in the run; completed: served to the end; rejected: refused at arrival "
    "(longer than the model's context, or than a worker's whole KV cache), as a server answers 400; "
    "refused: turned away by overload control when they could no longer meet their TTFT, with a "
    "retryable error (429/503).",
    "req/s and tok/s: completed requests and their tokens per second, first arrival to last finish; "
    "SLO %: share of offered requests that met both TTFT and TPOT targets (rejected and refused ones miss).",
    "preempt: recomputations for want of KV; overruns: generations that outgrew the KV reserved for "
    "their predicted length and were extended (EcoServe policies; 0 for policies that reserve nothing).",
)


def _cell(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "n/a" if not math.isfinite(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _table(key: str, label: Callable[[RunSummary], str], rows: Sequence[RunSummary],
           extra: tuple[str, Callable[[RunSummary], str]] | None = None) -> list[str]:
    head = [key] + ([extra[0]] if extra else []) + [h for h, _ in _COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [label(r)] + ([extra[1](r)] if extra else []) + [_cell(get(r)) for _, get in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _capacity_section(capacity: dict[str, CapacityResult], limit: float | None) -> list[str]:
    lines = ["## Capacity", ""]
    share = "| share of limit |" if limit else "|"
    lines += ["| policy | capacity req/s | met at req/s | failed at req/s " + share, "|---|---|---|---|" + ("---|" if limit else "")]
    for policy, found in capacity.items():
        low, high = found.bracket
        cells = [policy, found.label(), f"{low:.3g}", "none" if high is None else f"{high:.3g}"]
        if limit:
            cells.append(f"{100 * found.capacity / limit:.0f}%")
        lines.append("| " + " | ".join(cells) + " |")
    notes = capacity_notes(capacity, limit) if limit else []
    lines += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    for policy, found in capacity.items():
        lines += [f"### Probes of {policy}, by rate", ""]
        met = {id(p.summary): p.met for p in found.probes}
        rows = [p.summary for p in found.probes_by_rate()]
        lines += _table("rate", lambda r: f"{r.rate:.4g}", rows, ("met", lambda r: "yes" if met[id(r)] else "no"))
    return lines


def write_report_md(
    path: str | Path,
    results: Sequence[RunSummary],
    capacity: dict[str, CapacityResult] | None,
    meta: dict[str, Any],
    notes: Sequence[str] = (),
    limit: float | None = None,
) -> None:
    """Markdown: meta and notes, capacity per policy with its probes, then one table per rate and
    one per policy for the fixed-rate runs, and what the columns count."""
    lines = ["# EcoServe run report", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()] + [""]
    if notes:
        lines += ["## The requests", ""] + [f"- {n}" for n in notes] + [""]
    if capacity is not None:
        lines += _capacity_section(capacity, limit)
    if results:
        lines += ["## By rate", ""]
        for rate in sorted({r.rate for r in results}):
            lines += [f"### {rate:g} req/s", ""]
            lines += _table("policy", lambda r: r.policy, [r for r in results if r.rate == rate])
        lines += ["## By policy", ""]
        for policy in dict.fromkeys(r.policy for r in results):
            lines += [f"### {policy}", ""]
            rows = sorted((r for r in results if r.policy == policy), key=lambda r: r.rate)
            lines += _table("rate", lambda r: f"{r.rate:g}", rows)
    lines += ["## Columns", ""] + [f"- {n}" for n in COLUMN_NOTES] + [""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
