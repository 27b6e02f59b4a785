"""EcoServe's requests as vLLM's: sampling parameters, stop rules, and prompts that arrive in chunks.

A worker meets a request through its plan items, so it knows a prompt only up to the chunk it is
asked to compute. vLLM's request holds its whole sequence; until the last chunk has come, the
sequence here is the tokens seen so far plus one placeholder, so that vLLM's model runner treats the
chunk as a partial prefill (computed, nothing sampled) exactly as in vLLM's own chunked prefill.
The placeholder is never computed: the next chunk replaces it before any step reads it.
"""

from __future__ import annotations

import time
from typing import Any

from vllm.sampling_params import SamplingParams as VllmSamplingParams
from vllm.v1.engine import EngineCoreRequest, FinishReason
from vllm.v1.request import Request

from ecoserve.engine import SamplingParams

PLACEHOLDER = 0  # a valid id for any vocabulary


def vllm_sampling_params(params: SamplingParams, generation_config: dict[str, Any]) -> VllmSamplingParams:
    """Ours as vLLM's, with the model's EOS ids from its generation config, as `LLM.generate` sets
    them when it runs without a tokenizer."""
    sp = VllmSamplingParams(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                            seed=params.seed, max_tokens=params.max_tokens,
                            stop_token_ids=list(params.stop_token_ids), ignore_eos=params.ignore_eos)
    sp.update_from_generation_config(generation_config, None)
    return sp


def new_request(request_id: str, tokens: list[int], complete: bool, params: VllmSamplingParams) -> Request:
    """vLLM's request for the tokens seen so far; `complete`: they are the whole prompt."""
    core = EngineCoreRequest(
        request_id=request_id, prompt_token_ids=prompt_of(tokens, complete), mm_features=None,
        sampling_params=params, pooling_params=None, arrival_time=time.time(), lora_request=None,
        cache_salt=None, data_parallel_rank=None)
    return Request.from_engine_core_request(core, block_hasher=None)


def prompt_of(tokens: list[int], complete: bool) -> list[int]:
    return list(tokens) if complete else [*tokens, PLACEHOLDER]


def set_prompt(request: Request, tokens: list[int], complete: bool) -> None:
    """Give a request that has sampled nothing yet a longer (or its final) prompt, in place, as
    vLLM's scheduler does for a streaming-input session (`_update_request_as_session`)."""
    if request.num_output_tokens:
        raise ValueError(f"request {request.request_id}: its prompt cannot change after it has sampled")
    prompt = prompt_of(tokens, complete)
    request.prompt_token_ids[:] = prompt
    request._all_token_ids[:] = prompt
    request.num_prompt_tokens = len(prompt)


def finish_reason(reason: FinishReason | None) -> str | None:
    """vLLM's finish reason in EcoServe's words: "stop", "length" (or vLLM's own name for the rest)."""
    return None if reason is None else str(reason)
