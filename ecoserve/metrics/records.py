"""What one served request measured, and the per-request latency definitions (vLLM's benchmark)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# eq=False: a record holds a numpy array, and dataclass equality/hash over arrays is ill-defined.
@dataclass(frozen=True, slots=True, eq=False)
class RequestRecord:
    """A completed request; times are absolute seconds on one clock, `itl` its token gaps (s)."""

    arrival: float
    first_token: float
    finish: float
    prompt_len: int
    output_len: int
    ttft_slo: float
    tpot_slo: float
    itl: np.ndarray
    preemptions: int = 0

    def __post_init__(self) -> None:
        itl = np.asarray(self.itl, dtype=np.float64)
        if itl.ndim != 1 or len(itl) not in (0, self.output_len - 1):
            raise ValueError(
                f"itl must hold output_len - 1 = {self.output_len - 1} gaps or none, got shape {itl.shape}"
            )
        if self.output_len < 1 or not self.arrival <= self.first_token <= self.finish:
            raise ValueError("need output_len >= 1 and arrival <= first_token <= finish")
        object.__setattr__(self, "itl", itl)


def ttft(r: RequestRecord) -> float:
    """Time to first token: from arrival (send) to the first token."""
    return r.first_token - r.arrival


def e2e(r: RequestRecord) -> float:
    """End-to-end latency (JCT): from arrival to the last token."""
    return r.finish - r.arrival


def tpot(r: RequestRecord) -> float:
    """Time per output token after the first: (E2E - TTFT)/(output_len - 1); 0 for one token."""
    if r.output_len == 1:
        return 0.0
    return (r.finish - r.first_token) / (r.output_len - 1)


def meets_slo(r: RequestRecord) -> bool:
    """Both targets met (inclusive): TTFT <= ttft_slo and TPOT <= tpot_slo."""
    return ttft(r) <= r.ttft_slo and tpot(r) <= r.tpot_slo


def e2e_deadline(r: RequestRecord) -> float:
    """Latest finish, relative to arrival, of a request that meets both its targets exactly."""
    return r.ttft_slo + r.tpot_slo * (r.output_len - 1)
