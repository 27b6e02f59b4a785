"""Capacity: the highest request rate whose run still meets a latency criterion, by bisection."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from ecoserve.metrics.records import RequestRecord, e2e, e2e_deadline
from ecoserve.metrics.summary import RunSummary


@dataclass(frozen=True, slots=True)
class Criterion:
    """Name "slo": P99 E2E <= e2e_p99_bound; "itl": P99 ITL <= itl_p99_bound; both need slo_target.

    Both also need the run to keep up with its load: P99 E2E within e2e_p99_bound when one is
    given, else 99% of requests finished within their own E2E deadline (deadline_ratio_p99 <= 1).
    """

    name: Literal["slo", "itl"] = "slo"
    e2e_p99_bound: float | None = None
    itl_p99_bound: float = 0.1
    slo_target: float = 0.9

    def __post_init__(self) -> None:
        if self.name not in ("slo", "itl"):
            raise ValueError(f"criterion name must be 'slo' or 'itl', got {self.name!r}")


def deadline_ratio_p99(records: Sequence[RequestRecord]) -> float:
    """P99 over requests of E2E / own E2E deadline (ttft_slo + tpot_slo * (output_len - 1))."""
    if not records:
        return math.nan
    return float(np.percentile([e2e(r) / e2e_deadline(r) for r in records], 99))


def meets(summary: RunSummary, records: Sequence[RequestRecord], criterion: Criterion) -> bool:
    """Whether one run meets the criterion; a run with nothing completed never does."""
    if summary.completed == 0 or summary.slo_attainment < criterion.slo_target:
        return False
    if criterion.name == "itl" and not summary.itl_p99 <= criterion.itl_p99_bound:
        return False  # NaN (unmeasured) fails too
    if criterion.e2e_p99_bound is not None:
        return summary.e2e_p99 <= criterion.e2e_p99_bound
    return deadline_ratio_p99(records) <= 1.0


class Probe(NamedTuple):
    rate: float
    summary: RunSummary
    met: bool


@dataclass(slots=True)
class CapacityResult:
    """The criterion holds at `capacity` and fails at `upper` (the bracket the search ended with).

    capacity 0.0 with upper == lo: not met even at the lowest rate tried.
    upper == inf: still met at the highest rate tried; capacity is then only a lower bound.
    """

    capacity: float
    upper: float
    probes: list[Probe] = field(default_factory=list)

    @property
    def bracket(self) -> tuple[float, float | None]:
        """[highest rate met, lowest rate failed]; None when no rate tried failed."""
        return self.capacity, None if math.isinf(self.upper) else self.upper

    @property
    def lower_bound(self) -> bool:
        """Met at every rate tried: the true capacity is at least `capacity`, maybe far above."""
        return math.isinf(self.upper)

    def label(self, digits: int = 2) -> str:
        """The capacity as people should read it: '>= X' (a lower bound), '< X' (none met), 'X'."""
        if self.capacity == 0:
            return f"< {self.upper:.{digits}f}"
        if self.lower_bound:
            return f">= {self.capacity:.{digits}f}"
        return f"{self.capacity:.{digits}f}"

    def probes_by_rate(self) -> list[Probe]:
        return sorted(self.probes, key=lambda p: p.rate)

    def at_capacity(self) -> Probe | None:
        """The probe at the capacity rate (the highest rate that met the criterion)."""
        return next((p for p in self.probes if p.met and p.rate == self.capacity), None)


def capacity_notes(found: dict[str, CapacityResult], limit: float) -> list[str]:
    """What a reader must know before quoting a capacity: bounds, and figures above the limit."""
    notes = []
    for policy, result in found.items():
        if result.lower_bound:
            notes.append(f"{policy}: met at every rate tried, so {result.label()} is only a lower bound")
        elif result.capacity == 0:
            notes.append(f"{policy}: met at no rate tried ({result.label()})")
        if result.capacity > limit:
            notes.append(
                f"{policy}: {result.capacity:.2f} req/s is above the steady-state limit "
                f"({limit:.2f}): the run is too short for queues to build; use more requests"
            )
    return notes


Evaluate = Callable[[float], tuple[RunSummary, list[RequestRecord]]]


def find_capacity(
    evaluate: Evaluate,
    criterion: Criterion,
    lo: float,
    hi: float,
    rel_tol: float = 0.03,
    max_iter: int = 12,
    progress: Callable[[Probe], None] | None = None,
    max_expand: int = 4,
) -> CapacityResult:
    """Probe lo, then hi (doubling it up to max_expand times while met), then bisect.

    Bisection stops when upper - capacity <= rel_tol * capacity or after max_iter probes.
    Assumes the criterion is monotone in rate; with noisy runs the answer is the last met
    rate of the bracket, never interpolated.
    """
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    probes: list[Probe] = []

    def probe(rate: float) -> bool:
        summary, records = evaluate(rate)
        result = Probe(rate, summary, meets(summary, records, criterion))
        probes.append(result)
        if progress is not None:
            progress(result)
        return result.met

    if not probe(lo):
        return CapacityResult(0.0, lo, probes)
    for _ in range(max_expand + 1):
        if not probe(hi):
            break
        lo, hi = hi, hi * 2
    else:
        return CapacityResult(lo, math.inf, probes)
    for _ in range(max_iter):
        if hi - lo <= rel_tol * lo:
            break
        mid = (lo + hi) / 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return CapacityResult(lo, hi, probes)


def search_capacity(
    evaluate: Evaluate,
    criterion: Criterion,
    hint: float,
    rel_tol: float = 0.03,
    tries: int = 4,
    progress: Callable[[Probe], None] | None = None,
) -> CapacityResult:
    """find_capacity from [hint/4, hint] (hint: e.g. the limit); while even the low end fails,
    the bracket moves down 4x, at most `tries` searches in all."""
    lo, hi = hint / 4, hint
    probes: list[Probe] = []
    for _ in range(tries):
        found = find_capacity(evaluate, criterion, lo=lo, hi=hi, rel_tol=rel_tol, progress=progress)
        probes += found.probes
        if found.capacity > 0:
            break
        lo, hi = lo / 4, lo
    found.probes = probes  # every rate tried, over all the brackets
    return found
