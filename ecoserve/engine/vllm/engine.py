"""`VllmEngine`: the worker's step API over vLLM's EngineCore, which runs in this process.

Each `step` checks the batch before vLLM sees it, brings vLLM's requests up to the tokens the items
carry, hands the plan to the `PlanScheduler` and runs one `EngineCore.step()`: one forward pass of
vLLM's model runner over exactly the planned batch. An item this model cannot compute (a token id
outside its vocabulary, a position past its context) ends its own request with "error: ..." and the
rest of the batch runs; a step that disagrees with what the engine holds is refused whole. The
sampled tokens, with vLLM's finish decisions (EOS and stop tokens, max_tokens), are the step's
outputs. vLLM samples inside its step, so the step's time is all `forward_s`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ecoserve.engine import StepItem, StepOutput, StepTiming
from ecoserve.engine.vllm.runtime import load_vllm

load_vllm()

from vllm.v1.executor.abstract import Executor  # noqa: E402
from vllm.v1.engine.core import EngineCore  # noqa: E402
from vllm.v1.request import RequestStatus  # noqa: E402

from ecoserve.engine.vllm.config import VllmEngineConfig, build_vllm_config  # noqa: E402
from ecoserve.engine.vllm.plan_scheduler import PlannedStep, PlanRefused, PlanScheduler  # noqa: E402
from ecoserve.engine.vllm.requests import (  # noqa: E402
    finish_reason,
    new_request,
    set_prompt,
    vllm_sampling_params,
)


@dataclass(slots=True)
class _Sequence:
    """What the engine knows of a request beyond vLLM's own state."""

    tokens: list[int]  # the sequence so far: prompt (as much as was seen), then sampled tokens
    computed: int = 0  # tokens with KV in vLLM's cache
    complete: bool = False  # the whole prompt was seen (a sampling item came)
    finished: bool = False  # vLLM ended it (stop, length); the worker releases it later


class VllmEngine:
    """vLLM executing EcoServe's plans. KV capacity (`num_blocks`) is what vLLM allotted at start."""

    def __init__(self, config: VllmEngineConfig) -> None:
        self.config = config
        vllm_config = build_vllm_config(config, PlanScheduler)
        self.core = EngineCore(vllm_config, Executor.get_class(vllm_config), log_stats=False)
        self.scheduler: PlanScheduler = self.core.scheduler  # type: ignore[assignment]
        self._generation_config = vllm_config.model_config.try_get_generation_config()
        self._vocab = vllm_config.model_config.get_vocab_size()
        self._max_model_len = vllm_config.model_config.max_model_len
        self._max_tokens = vllm_config.scheduler_config.max_num_batched_tokens
        self._max_seqs = vllm_config.scheduler_config.max_num_seqs
        self._block_size = vllm_config.cache_config.block_size
        self._num_blocks = self.scheduler.kv_cache_manager.block_pool.get_num_free_blocks()
        self._seqs: dict[int, _Sequence] = {}

    @property
    def num_blocks(self) -> int:
        return self._num_blocks

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def num_free_blocks(self) -> int:
        return self.scheduler.kv_cache_manager.block_pool.get_num_free_blocks()

    def step(self, items: list[StepItem]) -> tuple[list[StepOutput], StepTiming]:
        started = time.perf_counter()
        errors = self._check(items)
        for rid in errors:
            self.release(rid)  # whatever it held goes; the scheduler ends it with the error
        run = [it for it in items if it.request_id not in errors]
        sampled: dict[str, Any] = {}
        if run:
            resend = [str(it.request_id) for it in run if self._advance(it)]
            self.scheduler.plan(PlannedStep([(str(it.request_id), len(it.token_ids)) for it in run], frozenset(resend)))
            results, _ = self.core.step()
            sampled = {out.request_id: out for outs in results.values() for out in outs.outputs}
        outputs = [StepOutput(it.request_id, None, True, f"error: {errors[it.request_id]}") if it.request_id in errors
                   else self._output(it, sampled.get(str(it.request_id))) for it in items]
        return outputs, StepTiming(forward_s=time.perf_counter() - started, sample_s=0.0)

    def release(self, request_id: int) -> None:
        """Done or cancelled: forget it; a request vLLM has not finished is aborted, freeing its blocks."""
        if self._seqs.pop(request_id, None) is not None:
            self.scheduler.finish_requests(str(request_id), RequestStatus.FINISHED_ABORTED)

    def reset(self, request_id: int) -> None:
        """Preempted: free its KV; its next item recomputes from position 0."""
        seq = self._seqs.get(request_id)
        if seq is not None and not seq.finished:
            self.scheduler.preempt(str(request_id))
            seq.computed = 0

    # --- a step's parts --------------------------------------------------------------------------

    def _check(self, items: list[StepItem]) -> dict[int, str]:
        """The items this model cannot compute, by request, with why; refuse a batch the scheduler
        and this engine disagree on (ValueError, PlanRefused) before vLLM sees any of it."""
        if len(items) > self._max_seqs:
            raise ValueError(f"a step of {len(items)} requests; the vllm engine takes at most {self._max_seqs}")
        total = sum(len(it.token_ids) for it in items)
        if total > self._max_tokens:
            raise ValueError(f"a step of {total} tokens; the vllm engine takes at most {self._max_tokens}")
        seen: set[int] = set()
        errors: dict[int, str] = {}
        need = 0
        for it in items:
            problem = _disagreement(it, self._seqs.get(it.request_id), seen)
            if problem:
                raise ValueError(f"request {it.request_id}: {problem}")
            seen.add(it.request_id)
            error = _uncomputable(it, self._vocab, self._max_model_len)
            if error:
                errors[it.request_id] = error
                continue
            bs = self._block_size
            need += _blocks(it.start_pos + len(it.token_ids), bs) - _blocks(it.start_pos, bs)
        if need > self.num_free_blocks:
            raise PlanRefused(f"the step needs {need} more KV blocks; vLLM's cache has {self.num_free_blocks} free")
        return errors

    def _advance(self, it: StepItem) -> bool:
        """Bring vLLM's request up to the item's tokens. True if the model runner must get its
        sequence whole again (a prompt that grew after it was scheduled)."""
        seq = self._seqs.get(it.request_id)
        end = it.start_pos + len(it.token_ids)
        if seq is None:
            seq = self._seqs[it.request_id] = _Sequence(list(it.token_ids), complete=it.sample)
            params = vllm_sampling_params(it.params, self._generation_config)
            self.core.add_request(new_request(str(it.request_id), seq.tokens, seq.complete, params))
            seq.computed = end
            return False
        grown = end > len(seq.tokens)
        if grown:
            seq.tokens += it.token_ids[len(seq.tokens) - it.start_pos:]
        finishing = it.sample and not seq.complete
        seq.complete |= it.sample
        seq.computed = end
        if not (grown or finishing):
            return False
        request = self.scheduler.requests[str(it.request_id)]
        scheduled_before = request.status != RequestStatus.WAITING
        set_prompt(request, seq.tokens, seq.complete)
        return scheduled_before

    def _output(self, it: StepItem, out: Any) -> StepOutput:
        seq = self._seqs[it.request_id]
        if not it.sample:
            return StepOutput(it.request_id, None, False, None)
        if out is None or len(out.new_token_ids) != 1:
            raise RuntimeError(f"request {it.request_id}: vLLM returned {out and out.new_token_ids} for a step "
                               "that samples one token")
        token = out.new_token_ids[0]
        seq.tokens.append(token)
        seq.finished = out.finish_reason is not None
        return StepOutput(it.request_id, token, seq.finished, finish_reason(out.finish_reason))


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


def _uncomputable(it: StepItem, vocab: int, max_len: int) -> str | None:
    """Why this model cannot compute the item's request, or None: its own fault, not the plan's."""
    bad = [t for t in it.token_ids if not 0 <= t < vocab]
    if bad:
        return f"token id {bad[0]} is outside the model's vocabulary of {vocab}"
    end = it.start_pos + len(it.token_ids)
    if end > max_len:
        return f"{end} tokens do not fit the model's context of {max_len}"
    return None


def _disagreement(it: StepItem, seq: _Sequence | None, seen: set[int]) -> str | None:
    """How the item contradicts the step or what the engine holds for its request, or None."""
    if it.request_id in seen:
        return "listed twice in one step"
    if not it.token_ids:
        return "no tokens to compute"
    end = it.start_pos + len(it.token_ids)
    if seq is None:
        return None if it.start_pos == 0 else f"first seen at position {it.start_pos}, not 0"
    if seq.finished:
        return "already finished"
    if it.start_pos != seq.computed:
        return f"start_pos {it.start_pos}, but {seq.computed} tokens are cached"
    known = seq.tokens[it.start_pos:end]
    if list(it.token_ids[:len(known)]) != known:
        return "tokens that differ from the ones it was given or sampled before"
    if end > len(seq.tokens) and seq.complete:
        return "tokens beyond the ones it sampled"
    if it.sample and end < len(seq.tokens):
        return f"sampling at position {end}, before the end of its {len(seq.tokens)} tokens"
    return None
