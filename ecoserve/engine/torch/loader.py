"""Hugging Face checkpoint directories in and out: config.json, *.safetensors, tokenizer.json.

Weights stream tensor by tensor from safetensors into a model built on the meta device, so loading
never holds two copies of the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .config import LlamaConfig
from .model import CausalLM

INDEX_FILE = "model.safetensors.index.json"
# Old checkpoints store the rotary frequencies; they are recomputed from the config.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def load_model(model_dir: str | Path, device: torch.device, dtype: torch.dtype) -> CausalLM:
    """Build the model from config.json and fill it from the directory's safetensors shards."""
    model_dir = Path(model_dir)
    config = LlamaConfig.from_dir(model_dir)
    with torch.device("meta"):
        model = CausalLM(config)
    model.to(dtype=dtype).to_empty(device=device)
    model.tie_weights()  # to_empty gives each module its own tensor
    model.place(device, dtype)
    params = dict(model.named_parameters(remove_duplicate=False))
    if config.tie_word_embeddings:
        params.pop("lm_head.weight")
    loaded: set[str] = set()
    for shard in _shards(model_dir):
        with safe_open(str(shard), framework="pt", device="cpu") as f:
            for name in f.keys():
                if name.endswith(_IGNORED_SUFFIXES) or (config.tie_word_embeddings and name == "lm_head.weight"):
                    continue
                if name not in params:
                    raise ValueError(f"{shard.name}: unexpected tensor {name!r}; not a Llama-family checkpoint?")
                tensor = f.get_tensor(name)
                if tensor.shape != params[name].shape:
                    raise ValueError(
                        f"{name}: checkpoint shape {tuple(tensor.shape)}, model {tuple(params[name].shape)}"
                    )
                with torch.no_grad():
                    params[name].copy_(tensor)
                loaded.add(name)
    missing = sorted(set(params) - loaded)
    if missing:
        raise ValueError(f"{model_dir}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    return model.eval()


def load_tokenizer(model_dir: str | Path) -> Tokenizer | None:
    """The directory's tokenizer.json, or None when it has none."""
    path = Path(model_dir) / "tokenizer.json"
    return Tokenizer.from_file(str(path)) if path.exists() else None


def save_model(model: CausalLM, out_dir: str | Path) -> Path:
    """Write config.json and model.safetensors as transformers' LlamaForCausalLM would read them."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_config = model.config.to_hf()
    hf_config["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    (out_dir / "config.json").write_text(json.dumps(hf_config, indent=2))
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return out_dir


def save_random_model(config: LlamaConfig, out_dir: str | Path, seed: int = 0) -> Path:
    """A randomly initialised checkpoint (HF's N(0, 0.02) init) with a byte-level tokenizer.

    Needs vocab_size >= 258 and bos/eos among the first ids past the 256 bytes, as `LlamaConfig.tiny`.
    """
    generator = torch.Generator().manual_seed(seed)
    model = CausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                continue  # norms start at one
            if name.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0.0, 0.02, generator=generator)
    out = save_model(model, out_dir)
    byte_tokenizer(config).save(str(out / "tokenizer.json"))
    return out


def byte_tokenizer(config: LlamaConfig) -> Tokenizer:
    """A byte-level tokenizer covering the vocab: id b < 256 is byte b, the rest are special tokens."""
    if config.vocab_size < 258:
        raise ValueError("a byte-level tokenizer needs vocab_size >= 258 (256 bytes, BOS, EOS)")
    vocab = {symbol: byte for byte, symbol in enumerate(_byte_symbols())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    names = {config.bos_token_id: "<|begin_of_text|>"}
    if config.eos_token_ids:
        names[config.eos_token_ids[0]] = "<|end_of_text|>"
    tokenizer.add_special_tokens([names.get(i, f"<|reserved_{i}|>") for i in range(256, config.vocab_size)])
    return tokenizer


def _byte_symbols() -> list[str]:
    """The printable stand-in of each byte used by byte-level BPE (GPT-2's convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    for extra, byte in enumerate(b for b in range(256) if b not in symbols):
        symbols[byte] = chr(256 + extra)
    return [symbols[b] for b in range(256)]


def _shards(model_dir: Path) -> list[Path]:
    index = model_dir / INDEX_FILE
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors files")
    return shards
