"""Writes an evaluation to a directory: eval.json, report.md and its plots."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ecoserve.core.rl_buckets import NUM_BUCKETS, bucket_label  # noqa: E402
from ecoserve.predictor.metrics import Evaluation, buckets_of  # noqa: E402

ROWS = (
    ("n", "records", "{:.0f}"),
    ("kendall_tau", "Kendall's tau", "{:.3f}"),
    ("mae", "MAE (tokens)", "{:.1f}"),
    ("median_relative_error", "median relative error", "{:.2f}"),
    ("bucket_accuracy", "bucket accuracy", "{:.1%}"),
    ("bucket_within_one", "bucket within one", "{:.1%}"),
    ("under_prediction_rate", "under-prediction rate of the reservation", "{:.1%}"),
    ("mean_unused_reserved_tokens", "mean reserved-but-unused tokens", "{:.1f}"),
    ("mean_reserved_tokens", "mean reservation (tokens)", "{:.1f}"),
    ("mean_overrun_tokens", "mean overrun past the reservation (tokens)", "{:.1f}"),
)


def _plots(ev: Evaluation, out: Path) -> list[tuple[str, str]]:
    actual = ev.data.tokens.astype(float)
    figs: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(actual, ev.point, s=4, alpha=0.3, label="point")
    lim = [1, max(actual.max(), ev.upper.max()) * 1.2]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="actual RL (tokens)", ylabel="predicted point (tokens)")
    ax.set_title("Predicted vs actual")
    fig.tight_layout()
    fig.savefig(out / "scatter.png", dpi=110)
    plt.close(fig)
    figs.append(("Predicted vs actual response length", "scatter.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(-4, 4, 81)
    ax.hist(np.log2(ev.point / actual), bins=bins, alpha=0.6, label="log2(point / actual)")
    ax.hist(np.log2(ev.upper / actual), bins=bins, alpha=0.6, label="log2(upper / actual)")
    ax.axvline(0, color="k", lw=1)
    ax.set(xlabel="log2 ratio", ylabel="requests")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ratios.png", dpi=110)
    plt.close(fig)
    figs.append(("Misprediction ratios (left of 0: too short)", "ratios.png"))

    conf = np.zeros((NUM_BUCKETS, NUM_BUCKETS))
    np.add.at(conf, (buckets_of(actual), buckets_of(ev.point.astype(float))), 1)
    rows = conf.sum(axis=1, keepdims=True)
    fig, ax = plt.subplots(figsize=(6, 5))
    share = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    labels = [bucket_label(b) for b in range(NUM_BUCKETS)]
    ax.set_xticks(range(NUM_BUCKETS), labels, rotation=60)
    ax.set_yticks(range(NUM_BUCKETS), labels)
    ax.set(xlabel="predicted bucket", ylabel="actual bucket", title="RL buckets (row-normalised)")
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(out / "buckets.png", dpi=110)
    plt.close(fig)
    figs.append(("RL bucket confusion", "buckets.png"))
    return figs


def _table(s: dict) -> list[str]:
    g, pl = s["baselines"]["global"], s["baselines"]["prompt_len"]
    lines = [
        "| metric | model | global mean / q-quantile | prompt-length regression |",
        "|---|---|---|---|",
    ]
    for key, name, fmt in ROWS:
        if key == "n":
            lines.append(f"| {name} | {s['n']} | | |")
        else:
            lines.append(f"| {name} | {fmt.format(s[key])} | {fmt.format(g[key])} | {fmt.format(pl[key])} |")
    return lines


def _group_table(groups: dict[str, dict], title: str) -> list[str]:
    return [
        f"## Per {title}",
        "",
        f"| {title} | n | tau | MAE | bucket acc. | under-prediction | unused reserved |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {name} | {m['n']} | {m['kendall_tau']:.3f} | {m['mae']:.1f} | {m['bucket_accuracy']:.1%} "
            f"| {m['under_prediction_rate']:.1%} | {m['mean_unused_reserved_tokens']:.1f} |"
            for name, m in groups.items()
        ],
        "",
    ]


def write_report(ev: Evaluation, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    s = ev.summary
    (out / "eval.json").write_text(json.dumps(s, indent=2) + "\n")
    figs = _plots(ev, out)
    md = [
        "# Response-length predictor: evaluation",
        "",
        f"Data: {s['data']} ({s['n']} records never seen in training or calibration; "
        f"{s['n_dropped_seen']} seen ones dropped). Reservation quantile q = {s['quantile']}: "
        f"at most {1 - s['quantile']:.0%} of responses should be longer than the reservation.",
        "",
        *_table(s),
        "",
        f"MAE is {s['mae_reduction_vs_mean']:.1%} below the global-mean baseline "
        f"(global median: {s['baseline_median_mae']:.1f}). A constant reservation that overruns as "
        f"often as the model's ({s['under_prediction_rate']:.1%}), picked with hindsight on this data, "
        f"leaves {s['constant_unused_at_same_under_prediction']:.1f} tokens unused on average "
        f"(model: {s['mean_unused_reserved_tokens']:.1f}).",
        "",
        f"Kendall's tau within each answering model (mean over models with 20 records or more): "
        f"{s['kendall_tau_within_model']:.3f}.",
        "",
        *[line for key, title in (("per_source", "source"), ("per_model", "answering model"))
          for line in _group_table(s[key], title)],
        *[line for title, f in figs for line in (f"## {title}", "", f"![{title}]({f})", "")],
    ]
    (out / "report.md").write_text("\n".join(md))
