"""Paged attention over a flat batch of tokens from many requests.

A step's tokens are concatenated (no padding between requests). Each request's K/V lives in the
blocks of its block table; a token at position p is stored in block table[p // block_size] at
offset p % block_size. Attention gathers each request's blocks and runs PyTorch's SDPA:

* decodes (one new token) are batched: block tables padded to the longest, a length mask;
* multi-token chunks (prefill or a prefill chunk) run one at a time with a causal mask shifted by
  the tokens already cached, so a chunked prefill computes exactly what a whole one does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, slots=True)
class SequenceSlice:
    """One request in a step: its block table, cached tokens and new tokens."""

    block_table: list[int]
    start_pos: int
    num_new: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """A multi-token slice of the batch: rows [begin, end) attend over its first `context` cached slots."""

    begin: int
    end: int
    blocks: torch.Tensor  # [blocks covering the context]
    context: int
    mask: torch.Tensor | None  # [new, context] bool; None when the chunk starts at position 0


@dataclass(frozen=True, slots=True)
class PagedBatch:
    """Everything attention needs for one step, built once and shared by all layers."""

    positions: torch.Tensor  # [tokens]
    slot_mapping: torch.Tensor  # [tokens] flat slot (block * block_size + offset) to write K/V to
    chunks: list[Chunk]
    decode_rows: torch.Tensor  # [decodes] token rows of the single-token slices
    decode_tables: torch.Tensor  # [decodes, max blocks] padded with block 0 (masked out)
    decode_mask: torch.Tensor  # [decodes, 1, 1, max blocks * block_size] True where a slot is valid


def build_batch(seqs: list[SequenceSlice], block_size: int, device: torch.device) -> PagedBatch:
    """Lay out positions, write slots and attention inputs for sequences in the order of their tokens."""
    positions: list[int] = []
    slots: list[int] = []
    chunks: list[Chunk] = []
    decode_rows: list[int] = []
    decode_tables: list[list[int]] = []
    decode_lens: list[int] = []
    row = 0
    for seq in seqs:
        context = seq.start_pos + seq.num_new
        span = range(seq.start_pos, context)
        positions.extend(span)
        slots.extend(seq.block_table[p // block_size] * block_size + p % block_size for p in span)
        used = seq.block_table[: -(-context // block_size)]
        if seq.num_new == 1:
            decode_rows.append(row)
            decode_tables.append(used)
            decode_lens.append(context)
        else:
            chunks.append(_chunk(row, seq, used, context, device))
        row += seq.num_new
    width = max((len(t) for t in decode_tables), default=0)
    padded = [t + [0] * (width - len(t)) for t in decode_tables]
    valid = torch.arange(width * block_size)[None, :] < torch.tensor(decode_lens, dtype=torch.long)[:, None]
    return PagedBatch(
        positions=torch.tensor(positions, dtype=torch.long).to(device),
        slot_mapping=torch.tensor(slots, dtype=torch.long).to(device),
        chunks=chunks,
        decode_rows=torch.tensor(decode_rows, dtype=torch.long).to(device),
        decode_tables=torch.tensor(padded, dtype=torch.long).reshape(len(padded), width).to(device),
        decode_mask=valid[:, None, None, :].to(device),
    )


def _chunk(row: int, seq: SequenceSlice, used: list[int], context: int, device: torch.device) -> Chunk:
    mask = None
    if seq.start_pos:
        query_pos = seq.start_pos + torch.arange(seq.num_new)
        mask = (torch.arange(context)[None, :] <= query_pos[:, None]).to(device)
    blocks = torch.tensor(used, dtype=torch.long).to(device)
    return Chunk(begin=row, end=row + seq.num_new, blocks=blocks, context=context, mask=mask)


def write_kv(
    k_cache: torch.Tensor, v_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """Store the step's new K/V [tokens, kv_heads, head_dim] into their slots of the block pools."""
    k_cache.view(-1, *k_cache.shape[2:])[slot_mapping] = k
    v_cache.view(-1, *v_cache.shape[2:])[slot_mapping] = v


def paged_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, batch: PagedBatch, scale: float
) -> torch.Tensor:
    """Attention output [tokens, heads, head_dim] for queries q [tokens, heads, head_dim]."""
    out = torch.empty_like(q)
    if batch.decode_rows.numel():
        # [decodes, blocks, block_size, kv_heads, dim] -> [decodes, kv_heads, slots, dim]
        k = k_cache[batch.decode_tables].flatten(1, 2).transpose(1, 2)
        v = v_cache[batch.decode_tables].flatten(1, 2).transpose(1, 2)
        qd = q[batch.decode_rows][:, :, None, :]
        o = F.scaled_dot_product_attention(qd, k, v, attn_mask=batch.decode_mask, scale=scale, enable_gqa=True)
        out[batch.decode_rows] = o[:, :, 0, :]
    for c in batch.chunks:
        k = k_cache[c.blocks].flatten(0, 1)[: c.context].transpose(0, 1)[None]
        v = v_cache[c.blocks].flatten(0, 1)[: c.context].transpose(0, 1)[None]
        qc = q[c.begin : c.end].transpose(0, 1)[None]
        o = F.scaled_dot_product_attention(
            qc, k, v, attn_mask=c.mask, is_causal=c.mask is None, scale=scale, enable_gqa=True
        )
        out[c.begin : c.end] = o[0].transpose(0, 1)
    return out
