"""`vllm-real`: vLLM's own V1 `Scheduler` decides every step; the simulator prices it with the cost model.

The `vllm` policy is our model of V1's rules. This one runs vLLM's code (vllm/v1/core/sched/
scheduler.py) on requests of synthetic token ids, feeding it fabricated model outputs, so that the
headline baseline is vLLM's scheduler itself and the model can be checked step by step against it.

Each step: the previous step's outputs go to `update_from_output` (one sampled token per request
that reached the end of its sequence), then `schedule()` decides. Its decision is mirrored into the
WorkerScheduler's queues and KV ledger (admissions, vLLM's block count per request, preemptions),
so the simulator, the cost model and the metrics see exactly what vLLM chose. EcoServe's side stays
the authority on finishes (lengths, stop tokens, cancels); vLLM's finishing a request that EcoServe
did not, or computing a different prefix, means the two lost step, and raises.

vLLM is imported on the first request, so naming the policy costs nothing.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecoserve.core.plan import BatchPlan
from ecoserve.core.policies.base import Policy
from ecoserve.core.request import Phase, Request

if TYPE_CHECKING:
    from ecoserve.core.cost_model import CostModel
    from ecoserve.core.hardware import ModelSpec
    from ecoserve.core.policies import PolicyOptions
    from ecoserve.core.scheduler import WorkerScheduler

SAMPLED_TOKEN = 1  # what the fabricated model samples; requests ignore EOS, so any id does


@dataclass(frozen=True, slots=True)
class VllmRealConfig:
    max_num_batched_tokens: int
    max_num_seqs: int
    watermark: float = 0.0
    # vLLM's own, V1's default. Each request's prompt is distinct synthetic ids (a trace's hash ids
    # are not reproduced), so the only hits are a preempted request's own blocks that were not
    # reused before it resumed, as in vLLM.
    prefix_caching: bool = True


def vllm_real_policy(cost: CostModel, options: PolicyOptions) -> VllmRealPolicy:
    """`vllm-real` with the knobs the `vllm` policy takes, at the same defaults. Prefix caching is
    vLLM's own; EcoServe's ledger only mirrors blocks (the policy's `prefix_caching` stays off)."""
    from ecoserve.core.policies import vllm_defaults

    tokens, seqs = vllm_defaults(cost)
    return VllmRealPolicy(cost.model, VllmRealConfig(
        max_num_batched_tokens=options.token_budget or tokens,
        max_num_seqs=options.max_num_seqs or seqs,
        watermark=options.watermark if options.watermark is not None else 0.0,
        prefix_caching=options.prefix_caching if options.prefix_caching is not None else True,
    ))


class VllmRealPolicy(Policy):
    name = "vllm-real"

    def __init__(self, model: ModelSpec, config: VllmRealConfig) -> None:
        self.model = model
        self.config = config
        self._vllm: Any = None  # vllm's Scheduler, built for the worker's ledger on the first request
        self._hasher: Any = None  # vLLM's block hasher for prefix caching, None without it
        self._requests: dict[str, Request] = {}  # vLLM's request id -> ours, while vLLM holds it
        self._pending: Any = None  # the SchedulerOutput whose outputs vLLM has not had yet

    def enqueue(self, sched: WorkerScheduler, req: Request) -> None:
        if self._vllm is None:
            self._vllm, self._hasher = build_scheduler(self.model, self.config, sched.ledger.capacity,
                                                       sched.ledger.block_size)
        sched.waiting.append(req)
        self._requests[str(req.id)] = req
        self._vllm.add_request(_vllm_request(req, self._hasher, self.model.vocab))

    def schedule(self, sched: WorkerScheduler, now: float) -> BatchPlan:
        self._settle()
        self._forget_ended(sched)
        out = self._vllm.schedule()
        plan = BatchPlan()
        running_order = {r.id: i for i, r in enumerate(sched.running)}
        for rid in sorted(out.preempted_req_ids or (), key=lambda k: -running_order[int(k)]):
            victim = self._requests[rid]
            sched.preempt(victim)  # frees its ledger blocks and puts it at the head of the queue
            plan.preempted.append(victim)
        manager = self._vllm.kv_cache_manager
        for rid, n in out.num_scheduled_tokens.items():
            req = self._requests[rid]
            computed = self._vllm.requests[rid].num_computed_tokens - n  # schedule() already advanced it
            if req.phase is Phase.WAITING_PT:
                sched.waiting.remove(req)
                sched.admit(req)
                req.num_computed = computed  # a prefix-cache hit starts past zero
            elif req.num_computed != computed:
                raise RuntimeError(f"vllm-real lost step with vLLM on request {req.id}: "
                                   f"{req.num_computed} tokens computed here, {computed} in vLLM")
            held = len(manager.get_block_ids(rid)[0])
            if not sched.ledger.allocate(req.id, held - sched.ledger.account(req.id).own):
                raise RuntimeError(f"vllm-real: vLLM gave request {req.id} {held} blocks the ledger does not have")
            sched.ledger.write(req.id, computed + n)
            plan.add(req, n)
        self._pending = out if out.num_scheduled_tokens else None
        return plan

    def _settle(self) -> None:
        """Give vLLM the previous step's outputs: a token for each request that reached its end."""
        out, self._pending = self._pending, None
        if out is None:
            return
        from vllm.v1.outputs import ModelRunnerOutput

        ids = list(out.num_scheduled_tokens)
        live = self._vllm.requests
        sampled = [[SAMPLED_TOKEN] if rid in live and live[rid].num_computed_tokens >= live[rid].num_tokens else []
                   for rid in ids]
        self._vllm.update_from_output(out, ModelRunnerOutput(
            req_ids=ids, req_id_to_index={rid: i for i, rid in enumerate(ids)}, sampled_token_ids=sampled))
        for rid in ids:
            req = self._requests.get(rid)
            if req is None:
                continue
            if rid not in live:
                if req.phase is not Phase.FINISHED:
                    raise RuntimeError(f"vllm-real lost step with vLLM: vLLM finished request {req.id} "
                                       f"after {req.generated} tokens, which EcoServe has not")
                del self._requests[rid]

    def _forget_ended(self, sched: WorkerScheduler) -> None:
        """Requests EcoServe ended that vLLM still holds (a stop token, a cancel, a rejection) end
        in vLLM as aborted."""
        if len(self._requests) == sched.num_unfinished:
            return
        from vllm.v1.request import RequestStatus

        ended = [rid for rid, req in self._requests.items() if req.phase is Phase.FINISHED]
        self._vllm.finish_requests(ended, RequestStatus.FINISHED_ABORTED)
        for rid in ended:
            del self._requests[rid]


def _vllm_request(req: Request, hasher: Any, vocab: int) -> Any:
    """vLLM's request for ours: distinct synthetic prompt ids, EOS ignored, our length as max_tokens."""
    from vllm.sampling_params import SamplingParams
    from vllm.v1.engine import EngineCoreRequest
    from vllm.v1.request import Request as VllmRequest

    prompt = np.random.default_rng(req.id).integers(0, vocab, req.prompt_len).tolist()
    core = EngineCoreRequest(
        request_id=str(req.id), prompt_token_ids=prompt, mm_features=None,
        sampling_params=SamplingParams(max_tokens=max(1, req.target_len), ignore_eos=True, temperature=0.0),
        pooling_params=None, arrival_time=time.time(), lora_request=None, cache_salt=None, data_parallel_rank=None)
    return VllmRequest.from_engine_core_request(core, block_hasher=hasher)


def build_scheduler(model: ModelSpec, config: VllmRealConfig, capacity: int, block_size: int,
                    scheduler_cls: type | None = None) -> tuple[Any, Any]:
    """vLLM's V1 Scheduler (or a subclass) for `model`'s shape with no model behind it, over
    `capacity` usable KV blocks (vLLM keeps one more: its null block), and the block hasher its
    requests need for prefix caching (None without)."""
    from ecoserve.engine.vllm.runtime import load_vllm

    load_vllm()
    import torch
    from vllm.config import CacheConfig, DeviceConfig, ModelConfig, SchedulerConfig, VllmConfig
    from vllm.utils.hashing import get_hash_fn_by_name
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.structured_output import StructuredOutputManager

    with tempfile.TemporaryDirectory(prefix="ecoserve-vllm-real-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(_hf_config(model)))
        model_config = ModelConfig(model=tmp, skip_tokenizer_init=True, dtype="float16",
                                   max_model_len=model.max_model_len, seed=0)
    vllm_config = VllmConfig(
        model_config=model_config,
        scheduler_config=SchedulerConfig(
            max_model_len=model.max_model_len, is_encoder_decoder=False, enable_chunked_prefill=True,
            max_num_batched_tokens=config.max_num_batched_tokens, max_num_seqs=config.max_num_seqs,
            watermark=config.watermark, async_scheduling=False),
        cache_config=CacheConfig(block_size=block_size, enable_prefix_caching=config.prefix_caching),
        device_config=DeviceConfig(device="cpu"),
    )
    blocks = capacity + 1
    vllm_config.cache_config.num_gpu_blocks = blocks
    spec = FullAttentionSpec(block_size=block_size, num_kv_heads=model.n_kv_heads, head_size=model.head_dim,
                             dtype=torch.float16)
    kv_config = KVCacheConfig(num_blocks=blocks, kv_cache_tensors=[],
                              kv_cache_groups=[KVCacheGroupSpec(["model.layers.0.self_attn"], spec)])
    sched = (scheduler_cls or Scheduler)(vllm_config=vllm_config, kv_cache_config=kv_config,
                      structured_output_manager=StructuredOutputManager(vllm_config),
                      block_size=block_size, hash_block_size=block_size, log_stats=False)
    if not config.prefix_caching:
        return sched, None
    hash_fn = get_hash_fn_by_name(vllm_config.cache_config.prefix_caching_hash_algo)
    init_none_hash(hash_fn)
    return sched, get_request_block_hasher(block_size, hash_fn)


def _hf_config(model: ModelSpec) -> dict[str, object]:
    """A Hugging Face config.json of the simulated model's shape (no weights: vLLM reads only this)."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": model.vocab,
        "hidden_size": model.hidden, "intermediate_size": model.intermediate,
        "num_hidden_layers": model.n_layers, "num_attention_heads": model.n_q_heads,
        "num_key_value_heads": model.n_kv_heads, "head_dim": model.head_dim,
        "max_position_embeddings": model.max_model_len, "torch_dtype": "float16",
    }
