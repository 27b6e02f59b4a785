"""The requests a benchmark sends: arrival times, prompt text and the output length to ask for.

Workloads (azure-conv, azure-code, sharegpt, arxiv, trace files) come from load_workload; their
missing prompt text is synthesized (ecoserve.bench.synthetic). Prompt sets (alpaca, dolly,
sharegpt_v3, ...) come from ecoserve.predictor.datasets: real text, output length = the
reference response's token count (or --output-len), arrivals as load_workload draws them for
length sets (seeded sample, Gamma gaps).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ecoserve.bench.synthetic import synthetic_prompt
from ecoserve.predictor.datasets import KNOWN_SETS, label, load_samples
from ecoserve.predictor.tokenizer import DEFAULT_TOKENIZER, TokenCounter, load_tokenizer
from ecoserve.workload import RequestSpec, load_workload, workload_names
from ecoserve.workload.arrivals import gamma_arrivals


def prompt_set_names() -> list[str]:
    """Short names of the prompt text sets (shared/data/prompts)."""
    return sorted(KNOWN_SETS)


def build_requests(
    source: str,
    num_requests: int,
    rate: float | None,
    *,
    seed: int = 0,
    burstiness: float = 1.0,
    output_len: int | None = None,
    tokenizer: str | None = None,
) -> list[RequestSpec]:
    """Requests sorted by arrival (first at 0), each with prompt text.

    `output_len` replaces every request's output length. `tokenizer` (a tokenizer.json or model
    directory) counts prompt-set tokens and makes synthetic prompts exact; prompt sets fall back
    to the predictor's default tokenizer.
    """
    if output_len is not None and output_len < 1:
        raise ValueError(f"output_len must be >= 1, got {output_len}")
    if source in KNOWN_SETS and source not in workload_names():
        counter = load_tokenizer(tokenizer or DEFAULT_TOKENIZER)
        return _prompt_set(source, num_requests, rate, seed, burstiness, output_len, counter)
    exact = load_tokenizer(tokenizer) if tokenizer else None
    specs = load_workload(source, num_requests, rate, seed, burstiness)
    return [
        replace(
            s,
            prompt=s.prompt if s.prompt is not None else synthetic_prompt(i, s.prompt_len, exact),
            output_len=output_len or s.output_len,
        )
        for i, s in enumerate(specs)
    ]


def _prompt_set(
    name: str,
    num_requests: int,
    rate: float | None,
    seed: int,
    burstiness: float,
    output_len: int | None,
    counter: TokenCounter,
) -> list[RequestSpec]:
    if rate is None:
        raise ValueError(f"{name} has no timestamps: give a rate (requests/s)")
    if num_requests < 1 or not rate > 0 or not burstiness > 0:
        raise ValueError("need num_requests >= 1, rate > 0 and burstiness > 0")
    samples = load_samples(name)
    if output_len is None:
        labeled = label(samples, counter)
        if len(labeled) == 0:
            raise ValueError(f"{name} has no responses to take output lengths from: give --output-len")
        prompts, outputs = labeled.prompts, labeled.tokens.tolist()
    else:
        prompts, outputs = [s.prompt for s in samples], [output_len] * len(samples)
    if num_requests > len(prompts):
        raise ValueError(f"{name}: asked for {num_requests} requests, but it has {len(prompts)} usable prompts")
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(prompts))[:num_requests]
    arrival = gamma_arrivals(num_requests, rate, burstiness, rng)
    picked = [prompts[i] for i in rows]
    lengths = counter.count_batch(picked)
    return [
        RequestSpec(a, p, outputs[i], text)
        for a, p, i, text in zip(arrival.tolist(), lengths, rows.tolist(), picked, strict=True)
    ]
