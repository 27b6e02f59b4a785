"""The step API every engine (torch, vllm, sim) implements; free of torch so `sim` stays light.

The scheduler owns the batch: each iteration it hands the worker a list of `StepItem`s (the new
tokens of every request in the batch) and gets one `StepOutput` per item back. Prefill, chunked
prefill, decode and recompute after preemption are all the same item: compute `token_ids` at
positions `start_pos...`, and sample the next token when `sample` is set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick a request's next tokens and when to stop. temperature 0 means greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int | None = None
    max_tokens: int = 16
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True, slots=True)
class StepItem:
    """One request's share of a step: the tokens to compute now, placed after `start_pos` cached ones."""

    request_id: int
    token_ids: list[int]
    start_pos: int
    sample: bool
    params: SamplingParams


@dataclass(frozen=True, slots=True)
class StepOutput:
    """What a step did for one item; token_id is None when the item did not sample."""

    request_id: int
    token_id: int | None
    finished: bool
    finish_reason: str | None  # "stop" (EOS or a stop token) or "length" (max_tokens)


@dataclass(frozen=True, slots=True)
class StepTiming:
    """Wall time of the step's parts, in seconds, for the cost model and the worker's metrics."""

    forward_s: float
    sample_s: float


class Engine(Protocol):
    """What a worker needs from an engine."""

    @property
    def num_blocks(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    def step(self, items: list[StepItem]) -> tuple[list[StepOutput], StepTiming]: ...

    def release(self, request_id: int) -> None: ...

    def reset(self, request_id: int) -> None: ...
