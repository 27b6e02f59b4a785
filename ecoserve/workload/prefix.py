"""Which blocks of a workload's requests repeat: the 16-token block hashes prefix caching works on.

Traces name repeated prefixes in coarser blocks (Mooncake: one id per 512 tokens, equal ids meaning
equal prefix KV); each is expanded into chained hashes of the engine's 16-token blocks, so two
requests share their first k blocks exactly when the trace says they share that prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ecoserve.core.prefix_cache import chain_hash

BLOCK = 16  # tokens per KV block, as the simulator's ledgers use


def expand_hash_ids(hash_ids: Sequence[int], trace_block: int, prompt_len: int, block: int = BLOCK) -> tuple[int, ...]:
    """Chained hashes of a prompt's whole `block`-token blocks from its trace block ids.

    Sub-block k of trace block j hashes (id_j, k) on top of its parent, so equal leading ids give
    equal leading hashes and the first differing id changes every hash after it.
    """
    if trace_block % block:
        raise ValueError(f"trace blocks of {trace_block} tokens are not whole {block}-token blocks")
    if len(hash_ids) * trace_block < prompt_len:
        raise ValueError(f"{len(hash_ids)} ids of {trace_block} tokens cannot cover a {prompt_len}-token prompt")
    per = trace_block // block
    hashes: list[int] = []
    parent: int | None = None
    for i in range(prompt_len // block):
        parent = chain_hash(parent, (hash_ids[i // per], i % per))
        hashes.append(parent)
    return tuple(hashes)


def conversation_hashes(conversation: int, tokens: int, block: int = BLOCK) -> tuple[int, ...]:
    """Hashes of the first `tokens // block` blocks of a conversation's running text: every turn
    repeats the history before it, so block j of conversation c is the same block in each turn."""
    hashes: list[int] = []
    parent: int | None = None
    for j in range(tokens // block):
        parent = chain_hash(parent, (conversation, j))
        hashes.append(parent)
    return tuple(hashes)


def ideal_hit_rate(requests: Iterable[tuple[int, tuple[int, ...] | None]], block: int = BLOCK) -> float:
    """Share of prompt blocks an infinite cache would hold when each request arrives: blocks any
    earlier request's sequence had (its prompt, and a conversation's reply). `requests` are
    (prompt_len, hashes of the whole sequence) in arrival order; NaN without any prompt block."""
    seen: set[int] = set()
    queried = hit = 0
    for prompt_len, hashes in requests:
        if not hashes:
            continue
        prompt = hashes[: (prompt_len - 1) // block]  # the last token is always computed
        queried += len(prompt)
        hit += sum(h in seen for h in prompt)
        seen.update(hashes)
    return hit / queried if queried else float("nan")
