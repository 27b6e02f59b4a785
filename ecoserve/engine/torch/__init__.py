"""The `torch` engine: a paged-KV runner for Llama-family checkpoints on CPU or one CUDA GPU."""

from ecoserve.engine import SamplingParams, StepItem, StepOutput, StepTiming

from .config import LlamaConfig, RopeScaling
from .engine import TorchEngine
from .kv_cache import BlockAllocator, OutOfBlocksError
from .loader import load_model, load_tokenizer, save_model, save_random_model
from .model import CausalLM

__all__ = [
    "BlockAllocator",
    "CausalLM",
    "LlamaConfig",
    "OutOfBlocksError",
    "RopeScaling",
    "SamplingParams",
    "StepItem",
    "StepOutput",
    "StepTiming",
    "TorchEngine",
    "load_model",
    "load_tokenizer",
    "save_model",
    "save_random_model",
]
