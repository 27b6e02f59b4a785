"""What the client saw of one request, filled in while it streams (kept even when it fails)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ecoserve.workload import RequestSpec


@dataclass(slots=True)
class Attempt:
    """One request of the run. Times are `time.perf_counter()` seconds.

    `token_times` holds one entry per token as it reached the client: a chunk carrying k tokens
    adds k equal times. `sent` stays None for a request the run never sent (cut by
    --max-duration before its turn, or waiting on --max-concurrency when time ran out).
    """

    index: int
    spec: RequestSpec
    scheduled: float = 0.0
    sent: float | None = None
    token_times: list[float] = field(default_factory=list)
    finish: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None

    @property
    def completed(self) -> bool:
        return self.sent is not None and self.error is None

    @property
    def failed(self) -> bool:
        return self.sent is not None and self.error is not None
