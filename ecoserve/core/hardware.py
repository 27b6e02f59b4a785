"""Model and GPU specs, and how many KV-cache blocks a deployment has.

The shapes are the Hugging Face configs; `n_params` counts every weight, embeddings and LM head
included, because all of them sit in GPU memory. A GPU's `profile` names the measured cost-model
family: A100-40GB and A100-80GB run the same kernels at the same speed and differ only in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20

# Memory a serving engine needs per GPU besides weights and KV cache: CUDA context, cuBLAS and NCCL
# workspaces, and the peak activations of a forward pass at the engine's token budget (the profiling
# run vLLM does at startup). An assumption, not a measurement: 1.5 GiB is the order vLLM reports for
# 7B-70B shards at 2048-8192 batched tokens.
RESERVE_BYTES_PER_GPU = 3 * GIB // 2


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    name: str
    n_layers: int
    hidden: int
    n_q_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    n_params: int
    dtype_bytes: int = 2
    max_model_len: int

    @property
    def weight_bytes(self) -> int:
        return self.n_params * self.dtype_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSpec:
    name: str
    memory_bytes: int  # as nvidia-smi reports memory.total
    profile: str  # cost-model family: "a100" or "h100"


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="llama-2-7b", n_layers=32, hidden=4096, n_q_heads=32, n_kv_heads=32, head_dim=128,
            intermediate=11008, vocab=32000, n_params=6_738_415_616, max_model_len=4096,
        ),
        ModelSpec(
            name="llama-3-8b", n_layers=32, hidden=4096, n_q_heads=32, n_kv_heads=8, head_dim=128,
            intermediate=14336, vocab=128256, n_params=8_030_261_248, max_model_len=8192,
        ),
        # Llama-3-8B's shapes with a 128k context (rope scaling changes no shape). Its cost model
        # is Llama-3-8B's: attention beyond the profiled context lengths is extrapolated.
        ModelSpec(
            name="llama-3.1-8b", n_layers=32, hidden=4096, n_q_heads=32, n_kv_heads=8, head_dim=128,
            intermediate=14336, vocab=128256, n_params=8_030_261_248, max_model_len=131072,
        ),
        ModelSpec(
            name="llama-2-70b", n_layers=80, hidden=8192, n_q_heads=64, n_kv_heads=8, head_dim=128,
            intermediate=28672, vocab=32000, n_params=68_976_648_192, max_model_len=4096,
        ),
    )
}

GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        GpuSpec(name="a100-40gb", memory_bytes=40960 * MIB, profile="a100"),
        GpuSpec(name="a100-80gb", memory_bytes=81920 * MIB, profile="a100"),
        GpuSpec(name="h100-80gb", memory_bytes=81559 * MIB, profile="h100"),
    )
}


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}") from None


def get_gpu(name: str) -> GpuSpec:
    try:
        return GPUS[name]
    except KeyError:
        raise ValueError(f"unknown gpu {name!r}; valid: {', '.join(sorted(GPUS))}") from None


def kv_bytes_per_token(model: ModelSpec) -> int:
    """K and V of one token in every layer, summed over all tensor-parallel shards."""
    return 2 * model.n_layers * model.n_kv_heads * model.head_dim * model.dtype_bytes


def kv_capacity_blocks(
    model: ModelSpec,
    gpu: GpuSpec,
    tp: int = 1,
    block_size: int = 16,
    mem_fraction: float = 0.9,
) -> int:
    """KV-cache blocks of `block_size` tokens that fit on `tp` GPUs once weights are loaded.

    Like vLLM: (tp * memory * mem_fraction - weights - tp * RESERVE_BYTES_PER_GPU) / block bytes.
    """
    if tp < 1 or model.n_q_heads % tp or model.n_kv_heads % tp:
        raise ValueError(f"tp={tp} must be >= 1 and divide the head counts of {model.name}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if not 0.0 < mem_fraction <= 1.0:
        raise ValueError(f"mem_fraction must be in (0, 1], got {mem_fraction}")
    free = tp * gpu.memory_bytes * mem_fraction - model.weight_bytes - tp * RESERVE_BYTES_PER_GPU
    blocks = int(free // (kv_bytes_per_token(model) * block_size))
    if blocks < 1:
        raise ValueError(
            f"{model.name} does not fit on {tp} x {gpu.name} at mem_fraction={mem_fraction}: "
            f"weights {model.weight_bytes / GIB:.1f} GiB, budget "
            f"{(tp * gpu.memory_bytes * mem_fraction - tp * RESERVE_BYTES_PER_GPU) / GIB:.1f} GiB"
        )
    return blocks
