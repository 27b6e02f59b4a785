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
