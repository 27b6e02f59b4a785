"""Online calibration on a new domain: how many completions until the reservation and ranking hold.

    .venv/bin/python benchmarks/predictor_online.py --out DIR [--error-model FILE]

A new domain is served models the predictor never trained on, answering conversations it never
saw: for each of 3 folds, a model is trained on 8 of AlpacaEval's 12 answering models on one half
of the conversations plus the instruction sets (as benchmarks/predictor_chat_eval.py's generator
split, "+instr": the configuration the shipped model is trained in), and the other 4
models' replies to the other half arrive as one stream in a seeded random order (~1600
completions), plus a cross-data-set stream: MT-bench's 3 models from a model trained on all of
AlpacaEval (~470). Each completion is first predicted with its served model's current online scale
(prequential: never calibrated on itself), then observed (ecoserve/predictor/online.py). Figures
are over the completions that arrive after the first N of the stream, for each N in --after, and
over sliding windows. With --error-model, the (point/actual, upper/actual) pairs of every fold's
completions after the first --warm-up are written as the simulator's error model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from ecoserve.predictor.chat import prompt_key  # noqa: E402
from ecoserve.predictor.datasets import CHAT_SETS, INSTRUCTION_SETS, LabeledSet, load_labeled  # noqa: E402
from ecoserve.predictor.error_model import ErrorModel  # noqa: E402
from ecoserve.predictor.metrics import score, within_tau  # noqa: E402
from ecoserve.predictor.model import RLModel, exact_prompt_tokens  # noqa: E402
from ecoserve.predictor.online import OnlineCalibrator, OnlineConfig  # noqa: E402
from ecoserve.predictor.tokenizer import load_tokenizer  # noqa: E402
from ecoserve.predictor.training import TrainConfig, train_on  # noqa: E402

from predictor_chat_eval import splits  # noqa: E402  (the script's folder is on sys.path)

WINDOW = 200


def stream(model: RLModel, data: LabeledSet, seed: int, config: OnlineConfig) -> dict:
    """Prequential (point, upper) for `data` in a seeded random order, calibrating per served model."""
    order = np.random.default_rng(seed).permutation(len(data))
    data = data.take(order)
    scores = model.scores(data.chats, data.max_tokens, exact_prompt_tokens(model.counter, data.chats))
    calibrator = OnlineCalibrator(model.scale, config)
    point, upper = np.empty(len(data)), np.empty(len(data))
    for i, (s, n, who) in enumerate(zip(scores.tolist(), data.tokens.tolist(), data.groups)):
        p, u = calibrator.scale_for(who).apply(np.array([s]))
        point[i], upper[i] = p[0], u[0]
        calibrator.observe(who, np.array([s]), np.array([n]))
    return {"data": data, "point": point, "upper": upper, "drifts": calibrator.drifts()}


def figures(run: dict, start: int, stop: int | None = None) -> dict:
    data: LabeledSet = run["data"]
    sl = slice(start, stop)
    actual, point, upper = data.tokens[sl], run["point"][sl], run["upper"][sl]
    if len(actual) < 20:
        return {"n": int(len(actual))}
    s = score(point, upper, actual)
    data_mean_mae = float(np.mean(np.abs(actual.mean() - actual)))
    return {
        "n": int(len(actual)),
        "kendall_tau": s["kendall_tau"],
        "kendall_tau_within_model": within_tau(point, actual, data.groups[sl]),
        "mae": s["mae"],
        "mae_reduction_vs_data_mean": 1 - s["mae"] / data_mean_mae,
        "under_prediction_rate": s["under_prediction_rate"],
        "mean_unused_reserved_tokens": s["mean_unused_reserved_tokens"],
    }


def table(rows: list[dict]) -> list[str]:
    out = ["| stream | after N | n scored | tau | tau within model | MAE vs data mean | under-pred. | unused |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "kendall_tau" not in r:
            out.append(f"| {r['stream']} | {r['after']} | {r['n']} | | | | | |")
            continue
        out.append(f"| {r['stream']} | {r['after']} | {r['n']} | {r['kendall_tau']:.3f} | "
                   f"{r['kendall_tau_within_model']:.3f} | {r['mae_reduction_vs_data_mean']:+.0%} | "
                   f"{r['under_prediction_rate']:.1%} | {r['mean_unused_reserved_tokens']:.0f} |")
    return out


def plot(runs: dict[str, dict], q: float, path: Path) -> None:
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, run in runs.items():
        n = len(run["data"])
        starts = list(range(0, n - WINDOW + 1, 50))
        w = [figures(run, a, a + WINDOW) for a in starts]
        x = [a + WINDOW for a in starts]
        axes[0].plot(x, [100 * f["under_prediction_rate"] for f in w], label=name)
        axes[1].plot(x, [f["kendall_tau"] for f in w], label=name)
    axes[0].axhspan(100 * (1 - q) - 2, 100 * (1 - q) + 2, color="g", alpha=0.15, label="target band")
    axes[0].set(ylabel=f"under-prediction, last {WINDOW} (%)")
    axes[1].axhline(0.5, color="k", ls="--", lw=1, label="target 0.5")
    axes[1].set(ylabel=f"tau, last {WINDOW}", xlabel="completions of the new domain served")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--after", default="0,100,200,300,500,800")
    ap.add_argument("--warm-up", type=int, default=500, help="completions per stream left out of --error-model")
    ap.add_argument("--error-model", default=None, help="write the post-warm-up pairs here (simulator error model)")
    ap.add_argument("--nthread", type=int, default=2)
    args = ap.parse_args()
    console = Console(stderr=True)
    counter = load_tokenizer()
    with console.status("loading alpaca_eval, mt_bench and the instruction sets"):
        ae, mt = load_labeled(["alpaca_eval"], counter), load_labeled(["mt_bench"], counter)
        instr = load_labeled(list(INSTRUCTION_SETS), counter)
    plan = [(f"{split} {name}", LabeledSet.concat([train, instr]), test)
            for split, name, train, test in splits(ae, mt, args.seed)
            if split == "generator" or name == "mt_bench"]
    cfg = TrainConfig(quantile=args.quantile, seed=args.seed, nthread=args.nthread, calibration_sets=CHAT_SETS)
    runs: dict[str, dict] = {}
    with Progress(console=console) as progress:
        task = progress.add_task("training, then streaming the new domain", total=len(plan))
        for name, train, test in plan:
            model = train_on(train, counter, cfg, {"data": [name]})
            keep = ~np.isin([prompt_key(c) for c in test.chats], model.seen)
            console.print(f"{name}: {int((~keep).sum())} of {len(test)} stream records dropped (conversation seen in training)")
            runs[name] = stream(model, test.take(np.flatnonzero(keep)), args.seed, OnlineConfig())
            progress.advance(task)
    after = [int(a) for a in args.after.split(",")]
    rows = [{"stream": name, "after": a, "drifts": run["drifts"], **figures(run, a)}
            for name, run in runs.items() for a in after]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "online.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = [f"# Online calibration on a new domain (q = {args.quantile}, seed {args.seed})", "",
          f"Figures over the completions after the first N of each stream (prequential). Target: "
          f"under-prediction {1 - args.quantile:.0%} +- 2 points, tau >= 0.5.", "", *table(rows), ""]
    (out / "online.md").write_text("\n".join(md))
    plot(runs, args.quantile, out / "online.png")
    print("\n".join(md))
    if args.error_model:
        gen = [r for n, r in runs.items() if n.startswith("generator")]
        point = np.concatenate([r["point"][args.warm_up:] for r in gen])
        upper = np.concatenate([r["upper"][args.warm_up:] for r in gen])
        actual = np.concatenate([r["data"].tokens[args.warm_up:] for r in gen])
        em = ErrorModel.from_predictions(
            point, upper, actual, args.quantile,
            f"ecoserve chat predictor calibrated online per served model: AlpacaEval generator folds, "
            f"completions after the first {args.warm_up} of each stream (benchmarks/predictor_online.py)")
        em.save(args.error_model)
        console.print(f"wrote {args.error_model}: {len(em.point_factors)} pairs of {len(actual)}, "
                      f"under-prediction {em.under_prediction_rate():.1%}")


if __name__ == "__main__":
    main()
