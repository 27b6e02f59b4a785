"""The unit a workload is made of: one request to send, and when."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request of a workload; `arrival` is seconds from the start of the run."""

    arrival: float
    prompt_len: int
    output_len: int
    prompt: str | None = None
