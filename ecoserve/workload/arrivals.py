"""Arrival processes: vLLM-style Gamma gaps, and rescaling a real trace's timing to a target rate."""

from __future__ import annotations

import numpy as np


def gamma_arrivals(n: int, rate: float, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """n arrival times from 0 with Gamma gaps: shape = burstiness, mean 1/rate (1 = Poisson).

    The coefficient of variation of the gaps is 1/sqrt(burstiness), as in vLLM's benchmark_serving.
    """
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=max(n - 1, 0))
    return np.concatenate(([0.0], np.cumsum(gaps)))


def native_rate(arrival: np.ndarray) -> float:
    """Mean rate of a trace slice, requests/s: the inverse of its mean inter-arrival gap."""
    span = float(arrival[-1] - arrival[0]) if len(arrival) else 0.0
    if span <= 0.0:
        raise ValueError("the trace slice spans no time; its rate is undefined")
    return (len(arrival) - 1) / span


def rescale(arrival: np.ndarray, rate: float) -> np.ndarray:
    """Stretch or compress gaps by native_rate/rate, so the slice's mean rate becomes `rate`."""
    return (arrival - arrival[0]) * (native_rate(arrival) / rate)


# Resolutions tried, coarsest first: 5000 s down to 1 ns in 5-2-1 steps (a stamp to 5 s, 10 ms, ...).
_RESOLUTIONS = tuple(m * 10.0**k for k in range(3, -10, -1) for m in (5, 2, 1))


def timestamp_resolution(arrival: np.ndarray) -> float | None:
    """The coarsest step of the 5-2-1 series (1 ns to 5000 s), no larger than the smallest gap
    between distinct stamps, that every stamp is a whole multiple of.

    None when the stamps are finer than 1 ns (e.g. generated floats) or all equal.
    """
    stamps = np.asarray(arrival, dtype=np.float64)
    gaps = np.diff(np.unique(stamps))
    if len(gaps) == 0:
        return None
    smallest = float(gaps.min())
    slack = 8 * np.finfo(np.float64).eps * np.abs(stamps)  # float error of a parsed stamp
    for res in _RESOLUTIONS:
        if res > smallest * (1 + 1e-9):
            continue
        quotient = stamps / res
        if np.all(np.abs(quotient - np.rint(quotient)) <= slack / res + 1e-6):
            return res
    return None


def count_ties(arrival: np.ndarray) -> int:
    """Requests whose stamp equals another request's (arrival is sorted)."""
    same = np.diff(arrival) == 0
    if not same.any():
        return 0
    shared = np.zeros(len(arrival), dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    return int(shared.sum())


def spread_within(arrival: np.ndarray, resolution: float, rng: np.random.Generator) -> np.ndarray:
    """Each stamp t becomes a uniform draw in [t, t + resolution): where a stamp was recorded.

    Coarse stamps put many requests at the same instant, a burst no client sent, which rate
    scaling keeps at any rate. Stamps are multiples of `resolution`, so sorting the draws reorders
    requests only within one stamp; the first request stays at 0.
    """
    spread = np.sort(arrival + rng.uniform(0.0, resolution, size=len(arrival)))
    return spread - spread[0]
