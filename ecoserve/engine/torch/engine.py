"""The executor: one batched forward and one sampling pass per scheduler iteration."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ecoserve.engine import SamplingParams, StepItem, StepOutput, StepTiming

from .attention import SequenceSlice, build_batch
from .kv_cache import BlockAllocator, KVCache
from .loader import load_model
from .model import CausalLM
from .sampler import new_generator, sample

CPU_DEFAULT_KV_BYTES = 1 << 30


@dataclass(slots=True)
class _Sequence:
    """What the engine remembers about a request between steps."""

    num_cached: int = 0  # tokens whose K/V are in the cache
    generated: int = 0  # tokens sampled so far (survives reset, so max_tokens holds across recompute)
    finished: bool = False
    generator: torch.Generator | None = None


class TorchEngine:
    """Paged-KV runner for a Llama-family model on CPU or one CUDA device.

    KV capacity, in order of precedence: `num_blocks`; `kv_cache_bytes`; `memory_fraction` of the
    memory free after loading the weights; else 0.9 of free memory on CUDA and 1 GiB on CPU, where
    the host runs everything else too and a toy model needs little.
    """

    def __init__(
        self,
        model: str | Path | CausalLM,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        num_blocks: int | None = None,
        block_size: int = 16,
        kv_cache_bytes: int | None = None,
        memory_fraction: float | None = None,
    ) -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {device!r}")
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        if isinstance(model, CausalLM):
            self.model = model.place(self.device, self.dtype).eval()
        else:
            self.model = load_model(model, self.device, self.dtype)
        self.config = self.model.config
        if num_blocks is None:
            num_blocks = self._blocks_for_memory(block_size, kv_cache_bytes, memory_fraction)
        self.allocator = BlockAllocator(num_blocks, block_size)
        self.kv = KVCache.allocate(self.config, num_blocks, block_size, self.device, self.dtype)
        self._seqs: dict[int, _Sequence] = {}

    @property
    def num_blocks(self) -> int:
        return self.allocator.num_blocks

    @property
    def block_size(self) -> int:
        return self.allocator.block_size

    @property
    def num_free_blocks(self) -> int:
        return self.allocator.num_free

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self.config.eos_token_ids

    def step(self, items: list[StepItem]) -> tuple[list[StepOutput], StepTiming]:
        """Compute every item's new tokens in one forward; sample where `sample` is set."""
        if not items:
            return [], StepTiming(0.0, 0.0)
        self._validate(items)
        self.allocator.grow({it.request_id: it.start_pos + len(it.token_ids) for it in items})
        seqs = [self._seqs.setdefault(it.request_id, _Sequence()) for it in items]

        slices = [SequenceSlice(self.allocator.table(it.request_id), it.start_pos, len(it.token_ids)) for it in items]
        sampling = [i for i, it in enumerate(items) if it.sample]
        sample_rows = [row for row, it in zip(_last_rows(items), items, strict=True) if it.sample]
        started = time.perf_counter()
        with torch.inference_mode():
            batch = build_batch(slices, self.block_size, self.device)
            input_ids = torch.tensor([t for it in items for t in it.token_ids], dtype=torch.long).to(self.device)
            hidden = self.model(input_ids, self.kv, batch)
            logits = self.model.logits(hidden[torch.tensor(sample_rows, dtype=torch.long).to(self.device)])
            self._sync()
            forward_done = time.perf_counter()
            tokens = self._sample(logits, [items[i] for i in sampling], [seqs[i] for i in sampling])
        sample_done = time.perf_counter()

        for it, seq in zip(items, seqs, strict=True):
            seq.num_cached = it.start_pos + len(it.token_ids)
        sampled = dict(zip(sampling, tokens, strict=True))
        outputs = [self._output(it, seq, sampled.get(i)) for i, (it, seq) in enumerate(zip(items, seqs, strict=True))]
        return outputs, StepTiming(forward_done - started, sample_done - forward_done)

    def release(self, request_id: int) -> None:
        """Forget a request (finished, cancelled or moved): its blocks go back to the pool."""
        self.allocator.free(request_id)
        self._seqs.pop(request_id, None)

    def reset(self, request_id: int) -> None:
        """Free a preempted request's KV for a later recompute from position 0.

        Its generated count and random stream are kept, so the recompute continues where it stopped.
        """
        self.allocator.free(request_id)
        seq = self._seqs.get(request_id)
        if seq is not None:
            seq.num_cached = 0

    def _validate(self, items: list[StepItem]) -> None:
        """Reject a malformed step before anything is allocated or computed."""
        seen: set[int] = set()
        for it in items:
            rid = it.request_id
            if rid in seen:
                raise ValueError(f"request {rid} appears twice in one step")
            seen.add(rid)
            if not it.token_ids:
                raise ValueError(f"request {rid}: empty token_ids")
            bad = [t for t in it.token_ids if not 0 <= t < self.config.vocab_size]
            if bad:
                raise ValueError(f"request {rid}: token ids {bad[:5]} outside vocab [0, {self.config.vocab_size})")
            seq = self._seqs.get(rid)
            cached = seq.num_cached if seq else 0
            if it.start_pos != cached:
                raise ValueError(f"request {rid}: start_pos {it.start_pos}, but {cached} tokens are cached")
            if seq is not None and seq.finished:
                raise ValueError(f"request {rid} already finished; release it")

    def _sample(self, logits: torch.Tensor, items: list[StepItem], seqs: list[_Sequence]) -> list[int]:
        if not items:
            return []
        for it, seq in zip(items, seqs, strict=True):
            if seq.generator is None and not it.params.greedy:
                seq.generator = new_generator(it.params.seed, self.device)
        return sample(logits, [it.params for it in items], [seq.generator for seq in seqs])

    def _output(self, item: StepItem, seq: _Sequence, token: int | None) -> StepOutput:
        if token is None:
            return StepOutput(item.request_id, None, False, None)
        seq.generated += 1
        reason = self._finish_reason(item.params, token, seq.generated)
        seq.finished = reason is not None
        return StepOutput(item.request_id, token, seq.finished, reason)

    def _finish_reason(self, params: SamplingParams, token: int, generated: int) -> str | None:
        if token in params.stop_token_ids or (not params.ignore_eos and token in self.config.eos_token_ids):
            return "stop"
        if generated >= params.max_tokens:
            return "length"
        return None

    def _sync(self) -> None:
        """Wait for queued GPU work so the timings measure it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _blocks_for_memory(
        self, block_size: int, kv_cache_bytes: int | None, memory_fraction: float | None
    ) -> int:
        per_block = KVCache.bytes_per_block(self.config, block_size, self.dtype)
        if kv_cache_bytes is None and memory_fraction is None and self.device.type == "cpu":
            kv_cache_bytes = CPU_DEFAULT_KV_BYTES
        if kv_cache_bytes is None:
            fraction = 0.9 if memory_fraction is None else memory_fraction
            if not 0 < fraction <= 1:
                raise ValueError(f"memory_fraction must be in (0, 1], got {fraction}")
            kv_cache_bytes = int(_free_memory(self.device) * fraction)
        num_blocks = kv_cache_bytes // per_block
        if num_blocks < 1:
            raise ValueError(f"{kv_cache_bytes} bytes hold no KV block ({per_block} bytes each)")
        return num_blocks


def _last_rows(items: list[StepItem]) -> list[int]:
    """Row of each item's last token in the flat batch."""
    rows, end = [], 0
    for it in items:
        end += len(it.token_ids)
        rows.append(end - 1)
    return rows


def _free_memory(device: torch.device) -> int:
    """Bytes free on the device now (after the weights are loaded)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
