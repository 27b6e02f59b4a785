"""Next-token choice for a batch of requests, each with its own params and random stream.

Filtering is vectorized over the batch (temperature, then top-k, then top-p, as in HF); the draw
uses the request's own torch.Generator, so a seeded request gets the same tokens whatever else
shares its batch, and across a preemption (the generator outlives the request's KV).
"""

from __future__ import annotations

import torch

from ecoserve.engine import SamplingParams


def new_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A request's random stream; unseeded requests draw a fresh seed from the OS."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def filter_logits(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """Scaled logits [rows, vocab] with tokens outside each row's top-k / top-p set at -inf."""
    logits = logits / temperature[:, None]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    vocab = logits.shape[-1]
    rank = torch.arange(vocab, device=logits.device)[None, :]
    k = torch.where(top_k > 0, top_k, vocab)
    sorted_logits = sorted_logits.masked_fill(rank >= k[:, None], float("-inf"))
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
    outside = (mass_before >= top_p[:, None]) & (top_p[:, None] < 1)
    sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def sample(
    logits: torch.Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]
) -> list[int]:
    """One token per row of logits [rows, vocab]; greedy rows need no generator."""
    tokens = logits.argmax(dim=-1)
    rows = [i for i, p in enumerate(params) if not p.greedy]
    if rows:
        device = logits.device
        chosen = [params[i] for i in rows]
        filtered = filter_logits(
            logits[rows],
            torch.tensor([p.temperature for p in chosen], device=device),
            torch.tensor([p.top_k for p in chosen], device=device),
            torch.tensor([p.top_p for p in chosen], device=device),
        )
        probs = filtered.softmax(dim=-1)
        for j, i in enumerate(rows):
            tokens[i] = torch.multinomial(probs[j], 1, generator=generators[i])[0]
    return tokens.tolist()
