"""PNG plots of run results. Uses matplotlib's Figure API with the Agg canvas: no pyplot global
state, no display needed, and callers that never plot never import matplotlib."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ecoserve.metrics.summary import RunSummary

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _save(fig: Figure, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def _by_policy(results: Sequence[RunSummary]) -> dict[str, list[RunSummary]]:
    groups: dict[str, list[RunSummary]] = {}
    for r in results:
        groups.setdefault(r.policy, []).append(r)
    return {p: sorted(rs, key=lambda r: r.rate) for p, rs in groups.items()}


def plot_latency_vs_rate(results: Sequence[RunSummary], path: str | Path) -> None:
    """Four panels against request rate, one line per policy: TTFT p99, TPOT/ITL p99, E2E p99, SLO."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    ax_ttft, ax_tpot, ax_e2e, ax_slo = fig.subplots(2, 2).ravel()
    for policy, runs in _by_policy(results).items():
        rate = [r.rate for r in runs]
        line = ax_ttft.plot(rate, [r.ttft_p99 * 1e3 for r in runs], marker="o", label=policy)[0]
        color = line.get_color()
        tpot_ms, itl_ms = [r.tpot_p99 * 1e3 for r in runs], [r.itl_p99 * 1e3 for r in runs]
        ax_tpot.plot(rate, tpot_ms, marker="o", color=color, label=f"{policy} TPOT")
        ax_tpot.plot(rate, itl_ms, marker="x", ls="--", color=color, label=f"{policy} ITL")
        ax_e2e.plot(rate, [r.e2e_p99 for r in runs], marker="o", color=color, label=policy)
        ax_slo.plot(rate, [r.slo_attainment for r in runs], marker="o", color=color, label=policy)
    for ax, title, unit in (
        (ax_ttft, "TTFT p99", "ms"),
        (ax_tpot, "TPOT p99 (solid) / ITL p99 (dashed)", "ms"),
        (ax_e2e, "E2E p99", "s"),
        (ax_slo, "SLO attainment", "share of requests"),
    ):
        ax.set_title(title)
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    ax_slo.set_ylim(0, 1.05)
    _save(fig, path)


def plot_kv_util(timelines: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> None:
    """KV-cache utilization (0-1) over time, one line per policy; values are (times s, util)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    for policy, (times, util) in timelines.items():
        ax.plot(times, util, label=policy, lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("KV utilization")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    _save(fig, path)
