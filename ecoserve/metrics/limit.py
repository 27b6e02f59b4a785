"""The limit (DESIGN section 5): an upper bound on any scheduler's capacity for a workload on a GPU.

Derivation and assumptions: docs/metrics.md, "The limit".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ecoserve.workload.spec import RequestSpec


class IterationCost(Protocol):
    """The part of the cost model the limit needs (ecoserve.core.cost_model.CostModel has it)."""

    def iteration_time(
        self,
        num_prefills: int,
        prefill_tokens: int,
        prefill_sq: int,
        prefill_cross: int,
        num_decodes: int,
        decode_context: int,
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class Limit:
    """Bounds in requests/s at a full batch of `batch` running requests (the fewer of max_batch and
    kv_fit, the requests KV holds at the mean footprint); `decode_iteration` s per full-batch step.
    """

    kv_bound: float
    compute_bound: float
    batch: int
    kv_fit: float
    decode_iteration: float

    @property
    def capacity(self) -> float:
        return min(self.kv_bound, self.compute_bound)

    @property
    def binding(self) -> str:
        """Which bound is lower: "kv" (occupancy reaches KV or max_batch) or "compute"."""
        return "kv" if self.kv_bound <= self.compute_bound else "compute"


def capacity_limit(
    specs: Sequence[RequestSpec],
    cost: IterationCost,
    kv_capacity_tokens: int,
    max_batch: int,
) -> Limit:
    """min(KV bound, compute bound) for these requests' lengths; arrival times are not used."""
    if not specs:
        raise ValueError("need at least one request")
    prompt = np.array([s.prompt_len for s in specs], dtype=np.float64)
    output = np.array([s.output_len for s in specs], dtype=np.float64)
    # KV tokens held summed over a request's iterations: p in its prefill step, p + j in decode j.
    kv_token_iters = output * prompt + output * (output - 1) / 2
    mean_output = float(output.mean())
    mean_kv = float(kv_token_iters.mean()) / mean_output  # per running request, per iteration
    kv_fit = kv_capacity_tokens / mean_kv
    batch = min(max_batch, math.floor(kv_fit))
    if batch < 1:
        raise ValueError(
            f"KV capacity of {kv_capacity_tokens} tokens holds less than one mean request ({mean_kv:.0f})"
        )
    context = round(batch * mean_kv)
    step = cost.iteration_time(0, 0, 0, 0, batch, context)
    # (a) Little's law: running requests = rate * E[output] iterations * step; at most `batch`.
    kv_bound = batch / (mean_output * step)
    # (b) GPU time per request: its prefill added to a full decode step, plus its decode share.
    lengths, counts = np.unique(prompt.astype(np.int64), return_counts=True)
    prefill = np.array(
        [cost.iteration_time(1, p, p * p, 0, batch, context) - step for p in lengths.tolist()]
    )
    per_request = float(prefill @ counts) / len(specs) + (mean_output - 1) * step / batch
    return Limit(
        kv_bound=kv_bound,
        compute_bound=1.0 / per_request,
        batch=batch,
        kv_fit=kv_fit,
        decode_iteration=step,
    )
