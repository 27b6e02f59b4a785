"""The previous (v1, prompt-text) predictor on the chat sets: the "before" figures of docs/predictor.md.

    git archive d02c3c2 ecoserve | tar -x -C /tmp/v1      # the v1 predictor and its shipped model
    .venv/bin/python benchmarks/predictor_before.py --v1 /tmp/v1 --out DIR

This process loads AlpacaEval and MT-bench with the current loaders (v1 could not read MT-bench)
and writes each user-turn / reply pair twice: as the last user turn alone, and as the whole
conversation rendered as text (what the gateway sent v1). A second Python process, with the v1
tree first on its path, predicts them with v1's shipped model and its own prompt-length baseline,
and times it (one core, CPU time) on the conversations of benchmarks/predictor_speed.py.
Writes DIR/before.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

V1_SCRIPT = r'''
import json, os, sys, time
os.environ.update(OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
sys.path.insert(0, sys.argv[1])
import numpy as np
from scipy.stats import kendalltau
from ecoserve.predictor import RLPredictor
from ecoserve.predictor.metrics import score
rows, long = json.load(open(sys.argv[2]))
p = RLPredictor.load()
b = p.model.baselines
out = []
for name in sorted({r["set"] for r in rows}):
    r = [x for x in rows if x["set"] == name]
    y = np.array([x["tokens"] for x in r], float)
    grp = np.array([x["model"] for x in r])
    for field in ("last_turn", "whole"):
        texts = [x[field] for x in r]
        point, upper = p.model.predict_tokens(texts)
        s = score(point, upper, y)
        lp, _ = b.by_prompt_len(np.asarray(p.model.counter.count_batch(texts)))
        out.append({"set": name, "input": field, "n": len(r), "kendall_tau": s["kendall_tau"],
                    "kendall_tau_within_model": float(np.mean([kendalltau(point[grp == k], y[grp == k]).statistic
                                                               for k in sorted(set(grp))])),
                    "mae": s["mae"], "baseline_mean_mae": float(np.mean(np.abs(b.mean - y))),
                    "baseline_data_mean_mae": float(np.mean(np.abs(y.mean() - y))),
                    "under_prediction_rate": s["under_prediction_rate"], "median_point": float(np.median(point)),
                    "median_actual": float(np.median(y)),
                    "prompt_len_baseline_tau": float(kendalltau(lp, y).statistic)})
os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
cpu = []
for text in long * 5:
    c = time.process_time(); p.predict([text]); cpu.append(time.process_time() - c)
out.append({"speed": "whole conversation as text, predictor tokenizes", "mean_chars": float(np.mean([len(t) for t in long])),
            "single_cpu_p50_ms": float(np.percentile(cpu, 50) * 1e3), "single_cpu_p99_ms": float(np.percentile(cpu, 99) * 1e3)})
print(json.dumps(out))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--v1", required=True, help="folder holding the v1 `ecoserve` package (git archive d02c3c2 ecoserve)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from predictor_speed import long_conversations  # the script's folder is on sys.path

    from ecoserve.predictor.chat import render
    from ecoserve.predictor.datasets import load_labeled
    from ecoserve.predictor.tokenizer import load_tokenizer

    counter = load_tokenizer()
    rows = []
    for name in ("alpaca_eval", "mt_bench"):
        data = load_labeled([name], counter)
        for chat, tokens, who in zip(data.chats, data.tokens.tolist(), data.groups):
            last = next(m.content for m in reversed(chat) if m.role == "user")
            rows.append({"set": name, "last_turn": last, "whole": render(chat), "tokens": tokens, "model": who})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    staged = out / "before_inputs.json"
    staged.write_text(json.dumps([rows, [render(c) for c in long_conversations(count=100)]]))
    result = subprocess.run([sys.executable, "-c", V1_SCRIPT, args.v1, str(staged)], check=True,
                            capture_output=True, text=True, cwd="/")
    staged.unlink()
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    (out / "before.json").write_text(json.dumps(figures, indent=2) + "\n")
    for f in figures:
        print(json.dumps(f))


if __name__ == "__main__":
    main()
