"""The `sim` engine: no model. A step sleeps for the cost model's iteration time and emits tokens.

Token ids are a deterministic function of (request, position), lowercase ASCII bytes, so a whole
cluster runs on a laptop, a recompute reproduces the same text, and a byte-level tokenizer shows
readable output. KV is counted per request like a paged cache, and a step that would hold more
blocks than the engine has fails loudly: that is the scheduler's ledger being wrong. A new request
may start past position 0: on its cached prefix (prefix caching), whose blocks the cache holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ecoserve.core.cost_model import CostModel
from ecoserve.engine import StepItem, StepOutput, StepTiming


@dataclass(slots=True)
class _Seq:
    cached: int = 0
    generated: int = 0  # survives reset, like the torch engine, so max_tokens holds across recompute
    finished: bool = False
    shared: int = 0  # leading tokens it started on from the prefix cache (blocks held once, by the cache)


def sim_token(request_id: int, position: int) -> int:
    return ord("a") + (request_id * 7 + position) % 26


class SimEngine:
    def __init__(self, cost: CostModel, num_blocks: int, block_size: int = 16, time_scale: float = 1.0) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.cost = cost
        self._num_blocks = num_blocks
        self._block_size = block_size
        self.time_scale = time_scale
        self._seqs: dict[int, _Seq] = {}
        # time.sleep wakes late (0.1 ms typically, milliseconds on a busy host); a GPU would not.
        # The lateness is taken back from the next steps (at most one step's time), so the
        # engine's time per step stays the cost model's on average and the live system can be
        # compared with the simulator.
        self._late = 0.0

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    @property
    def block_size(self) -> int:
        return self._block_size

    def step(self, items: list[StepItem]) -> tuple[list[StepOutput], StepTiming]:
        started = time.perf_counter()
        shape = [0, 0, 0, 0, 0, 0]  # CostModel.iteration_time's arguments, as BatchPlan builds them
        seen: set[int] = set()
        for it in items:
            seq = self._seqs.get(it.request_id) or _Seq(cached=-1)
            if seq.cached < 0:  # new, or reset: it starts on its cached prefix, if any
                seq.cached = seq.shared = it.start_pos
                self._seqs[it.request_id] = seq
            if it.request_id in seen or not it.token_ids or it.start_pos != seq.cached or seq.finished:
                raise ValueError(f"request {it.request_id}: bad step item (start_pos {it.start_pos}, "
                                 f"{seq.cached} cached, finished={seq.finished})")
            seen.add(it.request_id)
            n = len(it.token_ids)
            if n == 1 and it.start_pos > 0 and it.sample:
                shape[4] += 1
                shape[5] += it.start_pos + 1
            else:
                shape[0] += 1
                shape[1] += n
                shape[2] += n * n
                shape[3] += n * it.start_pos
        self._check_blocks(items)
        outputs = [self._advance(it) for it in items]
        target = self.cost.iteration_time(*shape) * self.time_scale
        delay = target - self._late - (time.perf_counter() - started)
        if delay > 0:
            time.sleep(delay)
        elapsed = time.perf_counter() - started
        self._late = min(max(0.0, self._late + elapsed - target), target)
        return outputs, StepTiming(elapsed, 0.0)

    def _check_blocks(self, items: list[StepItem]) -> None:
        bs = self._block_size
        shared = {rid: s.shared for rid, s in self._seqs.items()}
        tokens = {rid: s.cached for rid, s in self._seqs.items()}
        for it in items:
            tokens[it.request_id] = it.start_pos + len(it.token_ids)
            shared.setdefault(it.request_id, it.start_pos)
        blocks = sum(-(-t // bs) - shared[rid] // bs for rid, t in tokens.items())
        if blocks > self._num_blocks:
            raise RuntimeError(f"step needs {blocks} KV blocks; the engine has {self._num_blocks}")

    def _advance(self, it: StepItem) -> StepOutput:
        seq = self._seqs[it.request_id]
        seq.cached = it.start_pos + len(it.token_ids)
        if not it.sample:
            return StepOutput(it.request_id, None, False, None)
        token = sim_token(it.request_id, seq.cached)
        seq.generated += 1
        reason = "stop" if token in it.params.stop_token_ids else "length" if seq.generated >= it.params.max_tokens else None
        seq.finished = reason is not None
        return StepOutput(it.request_id, token, seq.finished, reason)

    def release(self, request_id: int) -> None:
        self._seqs.pop(request_id, None)

    def reset(self, request_id: int) -> None:
        seq = self._seqs.get(request_id)
        if seq is not None:
            seq.cached = -1  # recomputed from wherever its next step starts
