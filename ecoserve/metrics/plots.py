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


def plot_latency_vs_rate(
    results: Sequence[RunSummary],
    path: str | Path,
    ttft_slo: float | None = None,
    tpot_slo: float | None = None,
    slo_target: float | None = None,
) -> None:
    """Four panels against request rate, one line per policy: TTFT p99, TPOT/ITL p99, E2E p99, SLO.

    Latencies on a log axis (they span orders of magnitude past saturation), with the SLO targets
    drawn as dotted lines when given.
    """
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
    targets = (
        (ax_ttft, None if ttft_slo is None else ttft_slo * 1e3, "TTFT SLO"),
        (ax_tpot, None if tpot_slo is None else tpot_slo * 1e3, "TPOT SLO"),
        (ax_slo, slo_target, "required attainment"),
    )
    for ax, value, label in targets:
        if value is not None:
            ax.axhline(value, color="black", ls=":", lw=1, label=label)
    for ax, title, unit in (
        (ax_ttft, "TTFT p99", "ms"),
        (ax_tpot, "TPOT p99 (solid) / ITL p99 (dashed)", "ms"),
        (ax_e2e, "E2E p99", "s"),
        (ax_slo, "SLO attainment", "share of requests"),
    ):
        ax.set_title(title)
        ax.set_xlabel("request rate (req/s)")
        ax.set_ylabel(unit if ax is ax_slo else f"{unit} (log scale)")
        if ax is not ax_slo:
            ax.set_yscale("log", nonpositive="mask")
        ax.grid(alpha=0.3, which="both" if ax is not ax_slo else "major")
        _legend(ax)
    ax_slo.set_ylim(0, 1.05)
    _save(fig, path)


def _legend(ax) -> None:  # type: ignore[no-untyped-def]
    """A legend only where something is labelled (an empty one makes matplotlib warn)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def plot_kv_util(timelines: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> None:
    """KV-cache utilization (0-1) over time, one line per run; values are (times s, util)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    for label, (times, util) in timelines.items():
        ax.plot(times, util, label=label, lw=1)
    if not timelines:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("KV utilization (written share of the cache)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    _legend(ax)
    _save(fig, path)
