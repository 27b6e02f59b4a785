"""The order waiting prompts are tried in, and what happens to one that can no longer be on time
(DESIGN section 4, items 1, 2 and 5), as small objects a policy composes.

Orders (smaller key first):
- `work`: least predicted remaining work first, measured in the resource each request uses: its
  prefill time, plus the KV-seconds its predicted generation will hold as a share of the cache
  (tokens x steps x step time / cache tokens). Where compute binds, short prompts go first; where
  KV binds, requests that hold little KV for little time go first.
- `slack`: least TTFT slack first (the deadline less the prompt's own prefill), i.e. FCFS by
  deadline.
- `fcfs`: arrival order.
Before any of them: requests that already produced tokens (preempted, recomputing) and higher
`priority` (the request's field, larger first).

Overload: a prompt is late when even starting now it could not finish its prefill by its TTFT
deadline. `shed` refuses it at once with a retryable error (nothing else can make it on time, and
every moment it waits it takes capacity from requests that still can); `yield` keeps it behind
every on-time prompt, late ones ordered by their E2E deadline so that none waits without bound;
`none` leaves it where its key puts it. Either way no prompt waits past its TTFT deadline ahead
of one that can still meet its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ecoserve.core.request import Request

if TYPE_CHECKING:
    from ecoserve.core.cost_model import CostModel

OrderName = Literal["work", "slack", "fcfs"]
Overload = Literal["shed", "yield", "none"]


@dataclass(frozen=True, slots=True)
class QueueOrder:
    kind: OrderName
    cost: CostModel
    step: float  # seconds a decode step is taken to last (the iteration target)
    point_of: Callable[[Request], int]  # the length a request is expected to reach
    priority: bool = True

    def prefill_seconds(self, req: Request) -> float:
        """Its pending tokens prefilled alone, unchunked: the least time its first token takes."""
        n = req.pending_tokens
        return self.cost.iteration_time(1, n, n * n, n * req.num_computed, 0, 0)

    def key(self, req: Request, capacity_tokens: int) -> tuple[int, int, float]:
        started = 0 if req.generated else 1  # a preempted request resumes first
        rank = -req.priority if self.priority else 0
        if self.kind == "fcfs":
            return started, rank, req.arrival
        if self.kind == "slack":
            return started, rank, req.arrival + req.slo.ttft - self.prefill_seconds(req)
        final = max(self.point_of(req), req.generated + 1)
        left = final - req.generated
        kv_seconds = left * (req.prompt_len + (final + req.generated) / 2) * self.step / capacity_tokens
        return started, rank, self.prefill_seconds(req) + kv_seconds

    def late(self, req: Request, now: float) -> bool:
        """Its TTFT deadline cannot be met any more, even if it started now."""
        return req.generated == 0 and now + self.prefill_seconds(req) > req.arrival + req.slo.ttft

    def e2e_deadline(self, req: Request) -> float:
        return req.arrival + req.slo.ttft + req.slo.tpot * (max(self.point_of(req), 1) - 1)

    def split(
        self, waiting: list[Request], now: float, overload: Overload, window: int
    ) -> tuple[list[Request], list[Request]]:
        """(prompts to try, in order; late prompts to refuse), from `waiting` in key order.

        Only the first `window` are looked at, except under `yield`, which must see every late
        prompt to serve the late ones by deadline.
        """
        if overload == "none":
            return waiting[:window], []
        on_time: list[Request] = []
        late: list[Request] = []
        for req in waiting if overload == "yield" else waiting[:window]:
            (late if self.late(req, now) else on_time).append(req)
        if overload == "shed":
            return on_time, late
        return on_time[:window] + sorted(late, key=self.e2e_deadline), []
