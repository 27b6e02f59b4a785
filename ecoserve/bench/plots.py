"""Plots of one benchmark run: latency distributions, and latency against send time (where a
backlog or a stall shows as a rising band). matplotlib's Agg canvas, imported when called."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ecoserve.bench.attempt import Attempt
from ecoserve.metrics import RequestRecord, e2e, tpot, ttft


def _cdf(ax, values: np.ndarray, label: str, slo: float | None = None) -> None:  # type: ignore[no-untyped-def]
    if len(values):
        x = np.sort(values)
        ax.plot(x * 1e3, np.arange(1, len(x) + 1) / len(x), lw=1.2)
    if slo is not None:
        ax.axvline(slo * 1e3, color="red", ls="--", lw=1, label=f"SLO {slo * 1e3:g} ms")
        ax.legend(fontsize="small")
    ax.set_title(f"{label} ({len(values)} values)")
    ax.set_xlabel("ms")
    ax.set_ylabel("share ≤ x")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)


def plot_latency_cdf(records: Sequence[RequestRecord], path: str | Path) -> None:
    """CDFs of TTFT, TPOT, ITL (all gaps pooled) and E2E over completed requests."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    ax_ttft, ax_tpot, ax_itl, ax_e2e = fig.subplots(2, 2).ravel()
    slo = records[0] if records else None
    _cdf(ax_ttft, np.array([ttft(r) for r in records]), "TTFT", slo.ttft_slo if slo else None)
    _cdf(ax_tpot, np.array([tpot(r) for r in records if r.output_len > 1]), "TPOT", slo.tpot_slo if slo else None)
    _cdf(ax_itl, np.concatenate([r.itl for r in records]) if records else np.empty(0), "ITL")
    _cdf(ax_e2e, np.array([e2e(r) for r in records]), "E2E")
    fig.savefig(path, dpi=110)


def plot_timeline(attempts: Sequence[Attempt], records: Sequence[RequestRecord], path: str | Path) -> None:
    """TTFT and E2E of each completed request at its send time; failed sends marked on the axis."""
    from matplotlib.figure import Figure

    sent = [a.sent for a in attempts if a.sent is not None]
    t0 = min(sent) if sent else 0.0
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.subplots()
    at = np.array([r.arrival - t0 for r in records])
    ax.scatter(at, [e2e(r) for r in records], s=8, label="E2E")
    ax.scatter(at, [ttft(r) for r in records], s=8, label="TTFT")
    failed = [a.sent - t0 for a in attempts if a.failed and a.sent is not None]
    if failed:
        ax.scatter(failed, np.zeros(len(failed)), marker="x", color="red", s=30, label=f"failed ({len(failed)})")
    ax.set_xlabel("send time (s from the first request)")
    ax.set_ylabel("latency (s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)
