"""Predictor speed on one CPU core: single-prompt latency (p50/p99) and batched throughput.

    .venv/bin/python benchmarks/predictor_speed.py [--model FILE] [--out FILE.json]

One core means: every thread pool set to one thread (OpenMP for XGBoost, BLAS, the tokenizer's
rayon pool switched off) and the process pinned to one CPU. Workloads: the held-out test prompts
of the model's own data (short instructions, ~80 characters) and ShareGPT first prompts (long,
~770 characters). Each is measured with the predictor tokenizing the prompt itself, and with the
caller passing the prompt's token count (the gateway has it already). Wall and CPU time are both
reported: on a shared machine wall time includes waiting for the core, CPU time does not.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
    os.environ[var] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from ecoserve.predictor import RLPredictor  # noqa: E402
from ecoserve.predictor.datasets import load_labeled, load_samples, split_indices  # noqa: E402

BATCH = 64


def _timed(fn, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU seconds of n calls of fn(i)."""
    wall, cpu = np.empty(n), np.empty(n)
    for i in range(n):
        w, c = time.perf_counter(), time.process_time()
        fn(i)
        cpu[i] = time.process_time() - c
        wall[i] = time.perf_counter() - w
    return wall, cpu


def measure(predictor: RLPredictor, prompts: list[str], calls: int, with_counts: bool) -> dict:
    counts = predictor.model.counter.count_batch(prompts) if with_counts else None

    def one(i: int) -> None:
        j = i % len(prompts)
        if counts is None:
            predictor.predict([prompts[j]])
        else:
            predictor.predict([prompts[j]], prompt_tokens=[counts[j]])

    batches = [(k, min(k + BATCH, len(prompts))) for k in range(0, len(prompts) - BATCH + 1, BATCH)]

    def batch(i: int) -> None:
        a, b = batches[i % len(batches)]
        predictor.predict(prompts[a:b], prompt_tokens=counts[a:b] if counts else None)

    _timed(one, 100)  # warm caches and lazy initialisation
    wall, cpu = _timed(one, calls)
    n_batches = max(len(batches), 2000 // BATCH)
    bwall, bcpu = _timed(batch, n_batches)
    return {
        "prompts": len(prompts),
        "mean_chars": float(np.mean([len(p) for p in prompts])),
        "caller_gives_token_counts": with_counts,
        "single_p50_ms": float(np.percentile(wall, 50) * 1e3),
        "single_p99_ms": float(np.percentile(wall, 99) * 1e3),
        "single_cpu_p50_ms": float(np.percentile(cpu, 50) * 1e3),
        "single_cpu_p99_ms": float(np.percentile(cpu, 99) * 1e3),
        "batch64_prompts_per_s": float(n_batches * BATCH / bwall.sum()),
        "batch64_prompts_per_cpu_s": float(n_batches * BATCH / bcpu.sum()),
    }


def workloads(predictor: RLPredictor) -> dict[str, list[str]]:
    info = predictor.model.info
    data = load_labeled(info["data"], predictor.model.counter)
    test = split_indices(data.prompts, info["split_seed"])["test"]
    return {
        "held_out_test": [data.prompts[i] for i in test],
        "sharegpt_v3": [s.prompt for s in load_samples("sharegpt_v3")],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--calls", type=int, default=2000, help="single-prompt calls per workload")
    ap.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.core})
    predictor = RLPredictor.load(args.model, nthread=1)
    load_before = os.getloadavg()
    results = {
        name: [measure(predictor, prompts, args.calls, c) for c in (False, True)]
        for name, prompts in workloads(predictor).items()
    }
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores_visible": os.cpu_count(),
            "pinned_core": args.core,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
