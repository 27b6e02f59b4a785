"""Build a worker's engine by name: `torch` or `vllm` (a model directory) or `sim` (a cost-model name)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ecoserve.engine import Engine

ENGINES = ("torch", "sim", "vllm")


@dataclass(frozen=True, slots=True)
class EngineSpec:
    kind: str  # "torch", "sim" or "vllm"
    model: str  # torch, vllm: checkpoint directory; sim: cost-model name (e.g. llama-2-7b)
    device: str = "cpu"  # torch, vllm (which must run on the platform its build targets)
    gpu: str = "a100-40gb"  # sim only: the GPU whose memory and speed it stands in for
    block_size: int | None = None  # tokens per KV block; None: 16, or what vLLM's platform takes
    kv_cache_mb: float | None = None  # KV memory budget; None: the engine's default share of free memory
    num_blocks: int | None = None  # overrides the budget
    time_scale: float = 1.0  # sim only: multiply the cost model's iteration time


def make_engine(spec: EngineSpec) -> Engine:
    block_size = spec.block_size or 16
    if spec.kind == "sim":
        from ecoserve.core.cost_model import CostModel
        from ecoserve.core.hardware import kv_bytes_per_token
        from ecoserve.engine.sim import SimEngine

        cost = CostModel.load(spec.model, spec.gpu)
        if spec.num_blocks is not None:
            blocks = spec.num_blocks
        elif spec.kv_cache_mb is not None:
            blocks = int(spec.kv_cache_mb * 2**20 // (kv_bytes_per_token(cost.model) * block_size))
        else:
            blocks = cost.kv_capacity_blocks(block_size)
        return SimEngine(cost, blocks, block_size, spec.time_scale)
    if spec.kind == "torch":
        from ecoserve.engine.torch import TorchEngine

        if not Path(spec.model).is_dir():
            raise ValueError(f"torch engine: {spec.model!r} is not a model directory")
        kv_bytes = int(spec.kv_cache_mb * 2**20) if spec.kv_cache_mb is not None else None
        return TorchEngine(spec.model, device=spec.device, num_blocks=spec.num_blocks, block_size=block_size,
                           kv_cache_bytes=kv_bytes)
    if spec.kind == "vllm":
        from ecoserve.engine.vllm.config import VllmEngineConfig, default_block_size

        kv_bytes = int(spec.kv_cache_mb * 2**20) if spec.kv_cache_mb is not None else None
        config = VllmEngineConfig(spec.model, device=spec.device,  # checked before vLLM loads
                                  block_size=spec.block_size or default_block_size(spec.device),
                                  kv_cache_bytes=kv_bytes, num_blocks=spec.num_blocks)
        from ecoserve.engine.vllm.engine import VllmEngine

        return VllmEngine(config)
    raise ValueError(f"unknown engine {spec.kind!r}; choose from {', '.join(ENGINES)}")
