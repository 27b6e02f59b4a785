"""The response-length predictor on chat data it never saw: splits by generator, by prompt, by data set.

    .venv/bin/python benchmarks/predictor_chat_eval.py --out DIR [--heads regression,pairwise] [--no-defaults]

Data: ../shared/data/prompts/alpaca_eval_outputs.jsonl.gz (805 instructions x 12 answering models)
and mt_bench_answers.jsonl.gz (80 two-turn conversations x 3 models: 480 user-turn / reply pairs).
Splits (every test record's conversation is unseen in training, the seen-prompt filter counts the
rest; conversations are halved by a seeded hash, generators are put in 3 folds by sorted name):
- generator: train on 8 of AlpacaEval's 12 models on one half of the conversations, test the other
  4 models on the other half (3 folds, every model tested once);
- prompt: train on every AlpacaEval model on one half, test every model on the other half;
- dataset: train on all of AlpacaEval, test MT-bench (both turns), and the other way round.
Each split trains its own model per head (seeded 80/10/10 of its training records: 10% stops the
boosting and calibrates), on the split's chat records alone ("chat") and with the default sets
(Alpaca, Alpaca-GPT4, Dolly: 10,933 short-answer records) added to the ranking head's training
("+instr"; the scale head and the baselines are still fitted on the chat records only). Baselines are the training records' mean and prompt-length regression;
"data mean" is the test records' own mean (hindsight, the strongest constant). No online
calibration here: benchmarks/predictor_online.py does that. Writes DIR/chat_eval.json, chat_eval.md
and chat_eval.png.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from ecoserve.predictor.chat import conversation_key  # noqa: E402
from ecoserve.predictor.datasets import CHAT_SETS, INSTRUCTION_SETS, LabeledSet, load_labeled, unit_interval  # noqa: E402
from ecoserve.predictor.metrics import evaluate  # noqa: E402
from ecoserve.predictor.tokenizer import load_tokenizer  # noqa: E402
from ecoserve.predictor.training import TrainConfig, train_on  # noqa: E402

KEYS = (
    "n", "n_dropped_seen", "kendall_tau", "kendall_tau_within_model", "baseline_prompt_len_tau_within_model",
    "mae", "baseline_mean_mae", "baseline_data_mean_mae", "mae_reduction_vs_mean", "mae_reduction_vs_data_mean",
    "under_prediction_rate", "mean_unused_reserved_tokens", "actual_mean_tokens",
)
FOLDS = 3
HALVES_SALT = 10_000  # not a seed train_on splits with: its 80/10/10 must cut across the halves


def halves(data: LabeledSet, seed: int) -> np.ndarray:
    """True for the conversations in the first half (seeded hash of the first user turn)."""
    return unit_interval([conversation_key(c) for c in data.chats], HALVES_SALT + seed) < 0.5


def splits(ae: LabeledSet, mt: LabeledSet, seed: int) -> Iterator[tuple[str, str, LabeledSet, LabeledSet]]:
    """(split, name, train, test) for every split the module docstring lists."""
    first = halves(ae, seed)
    models = sorted(set(ae.generators))
    for k in range(FOLDS):
        held = np.isin(ae.generators, models[k::FOLDS])
        yield ("generator", f"fold {k}",
               ae.take(np.flatnonzero(first & ~held)), ae.take(np.flatnonzero(~first & held)))
    yield "prompt", "other half", ae.take(np.flatnonzero(first)), ae.take(np.flatnonzero(~first))
    yield "dataset", "mt_bench", ae, mt
    yield "dataset", "alpaca_eval", mt, ae


def pooled(rows: list[dict]) -> dict:
    """Record-weighted means over the folds of one split (for the summary table)."""
    n = np.array([r["n"] for r in rows], dtype=float)
    return {k: float(np.sum(n * np.array([r[k] for r in rows])) / n.sum()) if k != "n" else int(n.sum())
            for k in KEYS if k != "n_dropped_seen"}


def table(rows: list[dict]) -> list[str]:
    out = [
        "| split | test | data | head | n | tau | tau/model | MAE | -train mean | -data mean | under |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    out += [
        f"| {r['split']} | {r['name']} | {r['data']} | {r['head'][:4]} | {r['n']} | {r['kendall_tau']:.3f} | "
        f"{r['kendall_tau_within_model']:.3f} | {r['mae']:.0f} | {r['mae_reduction_vs_mean']:+.0%} | "
        f"{r['mae_reduction_vs_data_mean']:+.0%} | {r['under_prediction_rate']:.1%} |"
        for r in rows
    ]
    return out


def plot(rows: list[dict], path: Path) -> None:
    labels = [f"{r['split']}\n{r['name']}\n{r['data']} {r['head'][:4]}" for r in rows]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, len(rows) * 0.9), 7), sharex=True)
    x = np.arange(len(rows))
    axes[0].bar(x - 0.2, [r["kendall_tau"] for r in rows], 0.4, label="tau, all records")
    axes[0].bar(x + 0.2, [r["kendall_tau_within_model"] for r in rows], 0.4, label="tau within each model")
    axes[0].axhline(0.45, color="k", ls="--", lw=1, label="target 0.45")
    axes[0].set(ylabel="Kendall's tau")
    axes[0].legend(fontsize=8)
    axes[1].bar(x - 0.2, [100 * r["mae_reduction_vs_mean"] for r in rows], 0.4, label="vs training mean")
    axes[1].bar(x + 0.2, [100 * r["mae_reduction_vs_data_mean"] for r in rows], 0.4, label="vs test data's mean")
    axes[1].axhline(20, color="k", ls="--", lw=1, label="target 20%")
    axes[1].set(ylabel="MAE below the constant (%)")
    axes[1].legend(fontsize=8)
    axes[1].set_xticks(x, labels, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--heads", default="regression")
    ap.add_argument("--no-defaults", action="store_true", help="only the chat-data models, no +instr")
    ap.add_argument("--nthread", type=int, default=2)
    args = ap.parse_args()
    console = Console(stderr=True)
    counter = load_tokenizer()
    with console.status("loading alpaca_eval and mt_bench"):
        ae, mt = load_labeled(["alpaca_eval"], counter), load_labeled(["mt_bench"], counter)
        defaults = load_labeled(list(INSTRUCTION_SETS), counter)
    console.print(f"alpaca_eval: {len(ae)} records, mt_bench: {len(mt)} user-turn / reply pairs, "
                  f"instruction sets: {len(defaults)}")
    heads = args.heads.split(",")
    variants = ["chat"] + ([] if args.no_defaults else ["+instr"])
    plan = list(splits(ae, mt, args.seed))
    rows = []
    with Progress(console=console) as progress:
        task = progress.add_task("training and scoring", total=len(plan) * len(heads) * len(variants))
        for split, name, train, test in plan:
            for variant in variants:
                for head in heads:
                    cfg = TrainConfig(quantile=args.quantile, seed=args.seed, head=head, nthread=args.nthread,
                                      calibration_sets=CHAT_SETS)
                    data = train if variant == "chat" else LabeledSet.concat([train, defaults])
                    model = train_on(data, counter, cfg, {"data": [name]})
                    s = evaluate(model, test, name).summary
                    rows.append({"split": split, "name": name, "data": variant, "head": head, "n_train": len(data),
                                 "trees": model.info["trees"], **{k: s[k] for k in KEYS}})
                    progress.console.print(json.dumps(rows[-1]), soft_wrap=True)
                    progress.advance(task)
    summary = [{"split": sp, "name": "pooled", "data": v, "head": h,
                **pooled([r for r in rows if r["split"] == sp and r["head"] == h and r["data"] == v])}
               for sp in ("generator", "prompt", "dataset") for v in variants for h in heads]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chat_eval.json").write_text(json.dumps({"rows": rows, "pooled": summary}, indent=2) + "\n")
    md = [f"# Chat data the predictor never saw (q = {args.quantile}, seed {args.seed})", "", *table(rows), "",
          "Pooled over each split's folds (record-weighted):", "", *table(summary), ""]
    (out / "chat_eval.md").write_text("\n".join(md))
    plot(rows, out / "chat_eval.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
