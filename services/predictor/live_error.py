"""The served model's error on the requests it predicted, over a sliding window.

"Actual" is the number of tokens a request generated, which is what its KV reservation had to
cover; requests cut by max_tokens count with max_tokens, the predictions being capped there too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorSummary:
    samples: int
    mae_tokens: float
    mean_relative_error: float
    upper_coverage: float  # share of requests with actual <= upper


class LiveError:
    def __init__(self, window: int = 1000) -> None:
        self._rows: deque[tuple[int, int, int]] = deque(maxlen=window)

    def add(self, actual: int, point: int, upper: int) -> None:
        self._rows.append((actual, point, upper))

    def reset(self) -> None:
        """A new model is served: the old one's errors say nothing about it."""
        self._rows.clear()

    def summary(self) -> ErrorSummary:
        n = len(self._rows)
        if n == 0:
            return ErrorSummary(0, 0.0, 0.0, 0.0)
        abs_err = [abs(a - p) for a, p, _ in self._rows]
        return ErrorSummary(
            samples=n,
            mae_tokens=sum(abs_err) / n,
            mean_relative_error=sum(e / max(a, 1) for e, (a, _, _) in zip(abs_err, self._rows)) / n,
            upper_coverage=sum(a <= u for a, _, u in self._rows) / n,
        )
