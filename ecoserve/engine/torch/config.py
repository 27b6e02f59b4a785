"""Model shape of a Llama-family checkpoint, read from (and written as) a Hugging Face config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

SUPPORTED_MODEL_TYPES = ("llama", "mistral")


@dataclass(frozen=True, slots=True)
class RopeScaling:
    """Rotary frequency scaling: "llama3" (Llama 3.1+ smooth interpolation) or "linear"."""

    kind: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True, slots=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")

    @classmethod
    def tiny(cls, **overrides: Any) -> LlamaConfig:
        """A few-hundred-KB model for tests and the local CPU demo (byte-level vocab + specials)."""
        base = cls(
            vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
            num_kv_heads=2, head_dim=16, rms_norm_eps=1e-6, max_position_embeddings=4096,
            bos_token_id=256, eos_token_ids=(257,),
        )
        return replace(base, **overrides)

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> LlamaConfig:
        """config.json, plus the EOS ids of generation_config.json (Llama 3 instruct lists several)."""
        model_dir = Path(model_dir)
        config = cls.from_hf(json.loads((model_dir / "config.json").read_text()))
        gen_path = model_dir / "generation_config.json"
        if gen_path.exists():
            extra = _token_ids(json.loads(gen_path.read_text()).get("eos_token_id"))
            config = replace(config, eos_token_ids=tuple(dict.fromkeys(config.eos_token_ids + extra)))
        return config

    @classmethod
    def from_hf(cls, d: dict[str, Any]) -> LlamaConfig:
        """Parse a HF config dict (transformers 4.x `rope_scaling` or 5.x `rope_parameters` style)."""
        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported model_type {model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {d['hidden_act']!r}; only silu (SwiGLU)")
        if d.get("sliding_window") is not None:
            raise ValueError("sliding-window attention is not supported")
        rope = dict(d.get("rope_parameters") or d.get("rope_scaling") or {})
        if rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 1.0)) != 1.0:
            raise ValueError("partial rotary embeddings are not supported")
        num_heads = d["num_attention_heads"]
        return cls(
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"],
            num_layers=d["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=d.get("num_key_value_heads") or num_heads,
            head_dim=d.get("head_dim") or d["hidden_size"] // num_heads,
            rms_norm_eps=d.get("rms_norm_eps", 1e-5),
            rope_theta=rope.get("rope_theta", d.get("rope_theta", 10000.0)),
            rope_scaling=_rope_scaling(rope, d.get("max_position_embeddings", 2048)),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            tie_word_embeddings=d.get("tie_word_embeddings", False),
            attention_bias=d.get("attention_bias", False),
            mlp_bias=d.get("mlp_bias", False),
            bos_token_id=d.get("bos_token_id"),
            eos_token_ids=_token_ids(d.get("eos_token_id")),
        )

    def to_hf(self) -> dict[str, Any]:
        """A config.json that both this loader and transformers' LlamaForCausalLM accept."""
        rope: dict[str, Any] = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling is not None:
            s = self.rope_scaling
            rope.update(rope_type=s.kind, factor=s.factor)
            if s.kind == "llama3":
                rope.update(
                    low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor,
                    original_max_position_embeddings=s.original_max_position_embeddings,
                )
        eos: int | list[int] | None = list(self.eos_token_ids) or None
        if eos is not None and len(eos) == 1:
            eos = eos[0]
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_parameters": rope,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.attention_bias,
            "mlp_bias": self.mlp_bias,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
        }


def _token_ids(value: int | list[int] | None) -> tuple[int, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, int) else tuple(value)


def _rope_scaling(rope: dict[str, Any], max_positions: int) -> RopeScaling | None:
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return None
    if kind == "linear":
        return RopeScaling(kind="linear", factor=float(rope["factor"]))
    if kind == "llama3":
        return RopeScaling(
            kind="llama3",
            factor=float(rope["factor"]),
            low_freq_factor=float(rope["low_freq_factor"]),
            high_freq_factor=float(rope["high_freq_factor"]),
            original_max_position_embeddings=int(rope.get("original_max_position_embeddings", max_positions)),
        )
    raise NotImplementedError(f"rope type {kind!r} is not supported (default, linear, llama3 are)")
