"""Predictor speed on one CPU core: single-request latency (p50/p99) and batched throughput.

    .venv/bin/python benchmarks/predictor_speed.py [--model FILE] [--out FILE.json]

One core means: every thread pool set to one thread (OpenMP for XGBoost, BLAS, the tokenizer's
rayon pool switched off) and the process pinned to one CPU. Workloads: the held-out test requests
of the model's own data (instructions and chats), ShareGPT first prompts (~770 characters), and
conversations of 6-8k characters (MT-bench exchanges strung together, user and assistant turns
alternating, ending with a user turn). Each is measured with the predictor counting tokens itself,
and with the caller passing the prompt's token count (the gateway has it already). Wall and CPU
time are both reported: on a shared machine wall time includes waiting for the core, CPU time
does not.
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
from ecoserve.predictor.chat import Message, render  # noqa: E402
from ecoserve.predictor.datasets import load_labeled, load_samples, split_indices  # noqa: E402
from ecoserve.predictor.model import exact_prompt_tokens  # noqa: E402

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


def measure(predictor: RLPredictor, prompts: list, calls: int, with_counts: bool) -> dict:
    counts = exact_prompt_tokens(predictor.model.counter, [_chat(p) for p in prompts]) if with_counts else None

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
        "mean_chars": float(np.mean([len(render(_chat(p))) for p in prompts])),
        "max_chars": int(max(len(render(_chat(p))) for p in prompts)),
        "caller_gives_token_counts": with_counts,
        "single_p50_ms": float(np.percentile(wall, 50) * 1e3),
        "single_p99_ms": float(np.percentile(wall, 99) * 1e3),
        "single_cpu_p50_ms": float(np.percentile(cpu, 50) * 1e3),
        "single_cpu_p99_ms": float(np.percentile(cpu, 99) * 1e3),
        "batch64_prompts_per_s": float(n_batches * BATCH / bwall.sum()),
        "batch64_prompts_per_cpu_s": float(n_batches * BATCH / bcpu.sum()),
    }


def _chat(request):  # noqa: ANN001, ANN202 - a prompt string or a chat
    return (Message("user", request),) if isinstance(request, str) else request


def long_conversations(limit: int = 8000, count: int = 200) -> list[tuple[Message, ...]]:
    """Chats of MT-bench exchanges strung together up to `limit` characters, ending with a user turn."""
    exchanges = [(s.messages[-1].content, s.response) for s in load_samples("mt_bench") if s.response]
    rng = np.random.default_rng(0)
    out = []
    while len(out) < count:
        chat: list[Message] = []
        for i in rng.permutation(len(exchanges)):
            user, reply = exchanges[i]
            if sum(len(m.content) for m in chat) + len(user) + len(reply) + len(user) > limit:
                break
            chat += [Message("user", user), Message("assistant", reply)]
        chat.append(Message("user", exchanges[int(rng.integers(len(exchanges)))][0][: limit // 8]))
        if sum(len(m.content) for m in chat) >= 0.75 * limit:
            out.append(tuple(chat))
    return out


def workloads(predictor: RLPredictor) -> dict[str, list]:
    info = predictor.model.info
    data = load_labeled(info["data"], predictor.model.counter)
    test = split_indices(data.chats, info["split_seed"])["test"]
    return {
        "held_out_test": [data.chats[i] for i in test],
        "sharegpt_v3": [s.prompt for s in load_samples("sharegpt_v3")],
        "conversations_6k_8k": long_conversations(),
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
