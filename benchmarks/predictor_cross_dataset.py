"""Cross-dataset test of the response-length predictor: train on one set, test on each other.

    .venv/bin/python benchmarks/predictor_cross_dataset.py --out DIR

For each training set (seeded 80/10/10 split, as `ecoserve predictor train`), every test set is
scored on the records the model never saw (its own test split; all of another set except prompts
it shares with the training set). Baselines are the training set's, since a deployment does not
know the new workload's mean either. Writes DIR/cross_dataset.json and DIR/cross_dataset.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ecoserve.predictor.datasets import INSTRUCTION_SETS, load_labeled
from ecoserve.predictor.metrics import evaluate
from ecoserve.predictor.tokenizer import load_tokenizer
from ecoserve.predictor.training import TrainConfig, train_on

KEYS = (
    "n", "kendall_tau", "mae", "baseline_mean_mae", "baseline_prompt_len_mae", "bucket_accuracy",
    "under_prediction_rate", "mean_unused_reserved_tokens",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantile", type=float, default=0.9)
    args = ap.parse_args()
    counter = load_tokenizer()
    sets = {name: load_labeled([name], counter) for name in INSTRUCTION_SETS}
    cfg = TrainConfig(quantile=args.quantile, seed=args.seed)
    rows = []
    for train_name, train_data in sets.items():
        model = train_on(train_data, counter, cfg, {"data": [train_name]})
        for test_name, test_data in sets.items():
            s = evaluate(model, test_data, test_name).summary
            rows.append({"train": train_name, "test": test_name, **{k: s[k] for k in KEYS}})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross_dataset.json").write_text(json.dumps(rows, indent=2) + "\n")
    md = [
        f"# Cross-dataset evaluation (q = {args.quantile}, seed {args.seed})",
        "",
        "| train | test | n | tau | MAE | mean-baseline MAE | prompt-len MAE | bucket acc. "
        "| under-pred. | unused |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    md += [
        f"| {r['train']} | {r['test']} | {r['n']} | {r['kendall_tau']:.3f} | {r['mae']:.1f} | "
        f"{r['baseline_mean_mae']:.1f} | {r['baseline_prompt_len_mae']:.1f} | {r['bucket_accuracy']:.1%} | "
        f"{r['under_prediction_rate']:.1%} | {r['mean_unused_reserved_tokens']:.1f} |"
        for r in rows
    ]
    (out / "cross_dataset.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
