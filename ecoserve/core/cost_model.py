"""Time of one batched forward pass, from coefficients fitted to Vidur's GPU profiles.

    T = n_layers * [Lin(N) + 2 * (AR(N) + launch) + A_dec + A_pre] + host overhead

* Lin(N): the token-level ops of one layer (projections, MLP, norms, RoPE) at N = prefill tokens
  + decodes, N rounded up to a multiple of 8 like Vidur; a monotone table in N.
* AR(N): one tensor-parallel all-reduce of the N x hidden fp16 activations (two per layer, TP > 1).
* A_dec = a + b*B + c*sum(context) over the B decodes (0 when B = 0).
* A_pre = a'*prefills + b'*sum(c) + c'*sum(c^2) + d'*sum(c*k) over the prefill chunks c with cached
  prefixes k.
* Host overhead (off by default, like Vidur): e + f * sequences in the batch.

How each coefficient was fitted, and its error on held-out profile points, is in docs/cost_model.md
(regenerate with benchmarks/fit_cost_model.py). Some entries are estimates (H100 attention, TP
degrees or models without attention data); `CostModel.sources` says which.

`iteration_time` is the simulator's hot path: every coefficient is pre-multiplied into seconds per
iteration, and Lin + AR is tabulated at every multiple of 8 tokens, so a call is a list index and a
dozen float operations.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from ecoserve.core.hardware import GpuSpec, ModelSpec, get_gpu, get_model, kv_capacity_blocks

DATA_FILE = "cost_models.json"


@cache
def _shipped() -> dict[str, Any]:
    return json.loads(files("ecoserve.core").joinpath("data", DATA_FILE).read_text())


# Models priced with another's fit: the same shapes, so the same kernels; only the context differs,
# and attention beyond the profiled context lengths (4k) is extrapolated (the fit's linear terms).
FITTED_AS = {"llama-3.1-8b": "llama-3-8b"}


def entry_key(model: str, profile: str, tp: int) -> str:
    return f"{FITTED_AS.get(model, model)}/{profile}/tp{tp}"


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear y(x): flat below xs[0], secant of the upper half beyond xs[-1].

    The tables are monotone and linear at their top end (compute- or bandwidth-bound), so the
    secant over the upper half is a stable slope where the last segment alone would be noisy.
    """
    if x >= xs[-1]:
        mid = min(bisect_right(xs, xs[-1] / 2), len(xs) - 2)
        slope = (ys[-1] - ys[mid]) / (xs[-1] - xs[mid])
        return ys[-1] + slope * (x - xs[-1])
    i = bisect_right(xs, x)
    if i == 0:
        return ys[0]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class CostModel:
    """Iteration time of one (model, GPU, TP degree) deployment, in seconds."""

    def __init__(
        self,
        model: ModelSpec,
        gpu: GpuSpec,
        tp: int,
        entry: Mapping[str, Any],
        allreduce: Mapping[str, Any] | None,
        launch_ms: float,
        cpu_overhead: bool = False,
    ) -> None:
        """Build from one JSON entry (and its all-reduce table when tp > 1); prefer `load`."""
        self.model, self.gpu, self.tp = model, gpu, tp
        self.cpu_overhead = cpu_overhead
        self.sources: dict[str, str] = dict(entry["sources"])
        scale = model.n_layers * 1e-3  # ms per layer -> s per iteration
        cpu0, cpu1 = (x * 1e-3 for x in entry["cpu_overhead_ms"]) if cpu_overhead else (0.0, 0.0)

        n, lin = entry["lin"]["n"], entry["lin"]["ms"]
        tok = [0.0]  # index g -> seconds of the token-level ops at N = 8g; g = 0 is never read
        for g in range(1, int(n[-1]) // 8 + 1):
            ms = _interp(n, lin, 8 * g)
            if allreduce is not None:
                ms += 2 * (_interp(allreduce["bytes"], allreduce["ms"], 8 * g * model.hidden * 2) + launch_ms)
            tok.append(ms * scale + cpu0)
        half = len(tok) // 2
        self._tok = tok
        self._tail_slope = (tok[-1] - tok[half]) / (len(tok) - 1 - half)
        self._tail_base = tok[-1] - self._tail_slope * (len(tok) - 1)

        a, b, c = entry["decode_ms"]
        self._d0, self._d1, self._d2 = a * scale, b * scale + cpu1, c * scale
        a, b, c, d = entry["prefill_ms"]
        self._p0, self._p1, self._p2, self._p3 = a * scale + cpu1, b * scale, c * scale, d * scale

    @classmethod
    def load(cls, model: str, gpu: str, tp: int = 1, cpu_overhead: bool = False) -> CostModel:
        """The shipped fit for `model` on `tp` x `gpu`; ValueError if there is none.

        cpu_overhead adds the host time per iteration (scheduling, input preparation, sampling,
        output processing) from Vidur's legacy A100 measurements; off by default, like Vidur.
        """
        spec, gspec = get_model(model), get_gpu(gpu)
        data = _shipped()
        entry = data["entries"].get(entry_key(model, gspec.profile, tp))
        if entry is None:
            entries = data["entries"].values()
            fitted = FITTED_AS.get(model, model)
            tps = sorted(e["tp"] for e in entries if e["model"] == fitted and e["profile"] == gspec.profile)
            raise ValueError(f"no cost model for {model} on {gpu} at tp={tp}; available tp: {tps}")
        allreduce = data["allreduce"][f"{gspec.profile}/tp{tp}"] if tp > 1 else None
        return cls(spec, gspec, tp, entry, allreduce, data["allreduce_launch_ms"], cpu_overhead)

    def iteration_time(
        self,
        num_prefills: int,
        prefill_tokens: int,
        prefill_sq: int,
        prefill_cross: int,
        num_decodes: int,
        decode_context: int,
    ) -> float:
        """Seconds of one forward pass. Prefill chunks c_i with cached prefixes k_i give
        prefill_tokens = sum c_i, prefill_sq = sum c_i^2, prefill_cross = sum c_i*k_i; decodes give
        num_decodes and decode_context = the sum of their context lengths. Arguments are trusted."""
        g = (prefill_tokens + num_decodes + 7) >> 3
        if g <= 0:
            return 0.0
        tok = self._tok
        t = tok[g] if g < len(tok) else self._tail_base + self._tail_slope * g
        if num_decodes:
            t += self._d0 + self._d1 * num_decodes + self._d2 * decode_context
        if num_prefills:
            t += (
                self._p0 * num_prefills
                + self._p1 * prefill_tokens
                + self._p2 * prefill_sq
                + self._p3 * prefill_cross
            )
        return t

    def prefill_budget(self, num_decodes: int, decode_context: int, time_target: float) -> int:
        """Largest N such that one fresh N-token prefill chunk next to these decodes keeps the
        iteration within time_target seconds; 0 if not even one token fits.

        Bisection on N (iteration_time is non-decreasing in N: monotone table, non-negative
        coefficients), bracketed by inverting the token table, which dominates the cost.
        """
        fixed = self._p0
        if num_decodes:
            fixed += self._d0 + self._d1 * num_decodes + self._d2 * decode_context
        p1, p2 = self._p1, self._p2
        # Feasible N has a token-table group g <= G, so N + B <= 8G, and p2 N^2 + p1 N <= room.
        room = time_target - fixed - self._tok[1]
        if room < 0:
            return 0
        hi = 8 * self._max_group(time_target - fixed) - num_decodes + 1
        if p2 > 0:
            hi = min(hi, int((-p1 + (p1 * p1 + 4 * p2 * room) ** 0.5) / (2 * p2)) + 2)
        # Any N whose group fits in what the quadratic part leaves at N = hi is feasible.
        lo = 8 * self._max_group(time_target - fixed - p1 * hi - p2 * hi * hi) - num_decodes
        lo = max(0, min(lo, hi - 1))  # feasible (or 0); hi is infeasible
        tok, size, base, slope = self._tok, len(self._tok), self._tail_base, self._tail_slope
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            g = (mid + num_decodes + 7) >> 3
            t = tok[g] if g < size else base + slope * g
            if t + fixed + p1 * mid + p2 * mid * mid <= time_target:
                lo = mid
            else:
                hi = mid
        return lo

    def _max_group(self, budget: float) -> int:
        """Largest g whose token-table time (as iteration_time computes it) is <= budget; 0 if none."""
        tok = self._tok
        if budget < tok[-1]:
            return bisect_right(tok, budget, 1) - 1
        base, slope = self._tail_base, self._tail_slope
        if slope <= 0:
            return 1 << 40
        g = int((budget - base) / slope)
        while base + slope * (g + 1) <= budget:  # float rounding: settle on the exact group
            g += 1
        while base + slope * g > budget:
            g -= 1
        return max(g, len(tok) - 1)

    def kv_capacity_blocks(self, block_size: int = 16, mem_fraction: float = 0.9) -> int:
        return kv_capacity_blocks(self.model, self.gpu, self.tp, block_size, mem_fraction)
