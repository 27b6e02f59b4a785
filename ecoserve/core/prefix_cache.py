"""Automatic prefix caching: KV blocks named by a hash chained over their tokens, shared between
requests by reference count (vLLM V1's scheme).

A block's hash covers its parent's hash and its own tokens, so equal hashes mean equal prefixes,
not only equal blocks. A block stays cached after the last request using it ends; such blocks are
evicted least recently used first when a request needs the room. Only whole written blocks are
cached, and never blocks lent to or borrowed from another request (KVC pipelining lends only
unwritten KV, so the two never meet on one block).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_MASK = (1 << 63) - 1


def chain_hash(parent: int | None, content: Iterable[int]) -> int:
    """A stable 63-bit hash of a block: its parent's hash and its content (token ids, or the ids a
    trace gives)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update((parent if parent is not None else -1).to_bytes(8, "little", signed=True))
    for value in content:
        digest.update(int(value).to_bytes(8, "little", signed=True))
    return int.from_bytes(digest.digest(), "little") & _MASK


def block_hashes(tokens: Sequence[int], block_size: int) -> list[int]:
    """The chained hashes of the whole blocks of a token sequence (a partial last block has none)."""
    hashes: list[int] = []
    parent: int | None = None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = chain_hash(parent, tokens[start : start + block_size])
        hashes.append(parent)
    return hashes


@dataclass(slots=True)
class PrefixCache:
    """The cached blocks of one worker, their reference counts, and the LRU order of the free ones."""

    refs: dict[int, int] = field(default_factory=dict)  # block hash -> requests using it
    lru: OrderedDict[int, None] = field(default_factory=OrderedDict)  # unreferenced, oldest first
    queries: int = 0  # prompt blocks looked up
    hits: int = 0  # of them, found cached
    evictions: int = 0
    # Hashes whose entry changed since the last `take_changes` (kept only for a mirror that asks).
    track: bool = False
    changed: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def evictable(self) -> int:
        return len(self.lru)

    @property
    def referenced(self) -> int:
        return len(self.refs) - len(self.lru)

    def longest_prefix(self, hashes: Sequence[int]) -> int:
        """How many leading blocks of `hashes` are cached (a look, nothing changes)."""
        n = 0
        for h in hashes:
            if h not in self.refs:
                break
            n += 1
        return n

    def count_lookup(self, queried: int, hit: int) -> None:
        self.queries += queried
        self.hits += hit

    def ref(self, h: int) -> None:
        count = self.refs[h]
        if count == 0:
            del self.lru[h]
        self.refs[h] = count + 1
        self._touch(h)

    def unref(self, h: int) -> None:
        count = self.refs[h] - 1
        self.refs[h] = count
        if count == 0:
            self.lru[h] = None  # most recently used last
        self._touch(h)

    def add(self, h: int) -> None:
        """A newly written block joins the cache, used by the request that wrote it."""
        self.refs[h] = 1
        self._touch(h)

    def _touch(self, h: int) -> None:
        if self.track:
            self.changed.add(h)

    def evict(self, blocks: int) -> int:
        """Drop up to `blocks` unreferenced blocks, least recently used first; how many went."""
        gone = 0
        while gone < blocks and self.lru:
            h, _ = self.lru.popitem(last=False)
            del self.refs[h]
            self._touch(h)
            gone += 1
        self.evictions += gone
        return gone

    def take_changes(self) -> set[int]:
        changed, self.changed = self.changed, set()
        return changed
