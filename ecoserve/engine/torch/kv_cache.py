"""The paged KV cache: physical block pools per layer, and the map from requests to their blocks.

The scheduler's ledger decides how many blocks each request may hold; the allocator here only picks
which physical blocks they are. Running out therefore means the scheduler and the worker disagree,
and it is reported loudly rather than papered over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .config import LlamaConfig


class OutOfBlocksError(RuntimeError):
    """A step needs more KV blocks than are free; nothing was allocated."""


@dataclass(frozen=True, slots=True)
class KVCache:
    """Per layer, K and V pools of shape [num_blocks, block_size, num_kv_heads, head_dim]."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @staticmethod
    def bytes_per_block(config: LlamaConfig, block_size: int, dtype: torch.dtype) -> int:
        element = torch.empty((), dtype=dtype).element_size()
        return 2 * config.num_layers * block_size * config.num_kv_heads * config.head_dim * element

    @classmethod
    def allocate(
        cls, config: LlamaConfig, num_blocks: int, block_size: int, device: torch.device, dtype: torch.dtype
    ) -> KVCache:
        # Zeroed, not empty: padded attention reads stale slots under a mask, and 0 * NaN is NaN.
        shape = (num_blocks, block_size, config.num_kv_heads, config.head_dim)
        k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_layers)]
        v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_layers)]
        return cls(k, v)


class BlockAllocator:
    """Request id -> block table (physical block ids in position order); grows on demand."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks <= 0 or block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.num_blocks = num_blocks
        self.block_size = block_size
        # Popped from the end, so low block ids are used first and reused soon after release.
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))
        self._tables: dict[int, list[int]] = {}

    @property
    def num_free(self) -> int:
        return len(self._free)

    def table(self, request_id: int) -> list[int]:
        return self._tables.get(request_id, [])

    def blocks_needed(self, request_id: int, num_tokens: int) -> int:
        """Extra blocks the request needs so that its table covers `num_tokens` positions."""
        return max(0, -(-num_tokens // self.block_size) - len(self.table(request_id)))

    def grow(self, needs: Mapping[int, int]) -> None:
        """Make each request's table cover the given number of tokens; all or nothing."""
        missing = {rid: self.blocks_needed(rid, n) for rid, n in needs.items()}
        total = sum(missing.values())
        if total > len(self._free):
            raise OutOfBlocksError(
                f"step needs {total} new KV blocks but only {len(self._free)} of {self.num_blocks} are free "
                f"(per request: {missing}); the scheduler's KV ledger and this worker disagree"
            )
        for rid, count in missing.items():
            if count:
                table = self._tables.setdefault(rid, [])
                table.extend(self._free.pop() for _ in range(count))

    def free(self, request_id: int) -> None:
        """Return all of a request's blocks; a request without blocks is a no-op."""
        self._free.extend(reversed(self._tables.pop(request_id, [])))
