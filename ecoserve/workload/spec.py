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
    # Chained hashes of its 16-token blocks (prefix_cache.chain_hash), where the workload knows
    # which blocks repeat: the prompt's, and in a conversation the reply's, which later turns repeat.
    block_hashes: tuple[int, ...] | None = None
