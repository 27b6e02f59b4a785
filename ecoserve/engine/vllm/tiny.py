"""The tiny random Llama the vllm engine runs on CPU: the torch engine's, with head_dim 64.

vLLM's CPU attention refuses the torch tiny model's head_dim of 16 ("Unsupported CPU attention
configuration"); 64 works. Written by the project's own writer (config, safetensors, byte-level
tokenizer), so the gateway, `LLM.generate` and the engines all read the same directory.
"""

from __future__ import annotations

from pathlib import Path

from ecoserve.engine.torch import LlamaConfig, save_random_model

TINY_VLLM = LlamaConfig.tiny(hidden_size=128, num_heads=2, num_kv_heads=1, head_dim=64)


def save_tiny_vllm_model(out_dir: str | Path, seed: int = 0) -> Path:
    return save_random_model(TINY_VLLM, out_dir, seed=seed)
