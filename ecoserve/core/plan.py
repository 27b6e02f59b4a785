"""BatchPlan: what one worker computes in one iteration (one forward pass)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecoserve.core.request import Request


@dataclass(slots=True)
class BatchPlan:
    """Requests and how many new tokens each computes, with the shape the cost model prices.

    A decode is one new token on top of a cached context; anything else (a prompt, a chunk of one,
    a recompute after preemption) is a prefill chunk on top of its cached prefix.
    """

    items: list[tuple[Request, int]] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)
    # Refused before it started (overload control): it ends with a retryable error.
    refused: list[Request] = field(default_factory=list)
    num_prefills: int = 0
    prefill_tokens: int = 0
    prefill_sq: int = 0
    prefill_cross: int = 0
    num_decodes: int = 0
    decode_context: int = 0

    def add(self, req: Request, num_tokens: int) -> None:
        self.items.append((req, num_tokens))
        prefix = req.num_computed
        if num_tokens == 1 and req.generated > 0 and req.pending_tokens == 1:
            self.num_decodes += 1
            self.decode_context += prefix + 1
        else:
            self.num_prefills += 1
            self.prefill_tokens += num_tokens
            self.prefill_sq += num_tokens * num_tokens
            self.prefill_cross += num_tokens * prefix

    @property
    def num_tokens(self) -> int:
        return self.prefill_tokens + self.num_decodes

    def __bool__(self) -> bool:
        return bool(self.items)

    def shape(self) -> tuple[int, int, int, int, int, int]:
        """Arguments of CostModel.iteration_time, in order."""
        return (
            self.num_prefills,
            self.prefill_tokens,
            self.prefill_sq,
            self.prefill_cross,
            self.num_decodes,
            self.decode_context,
        )
