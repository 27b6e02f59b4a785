"""load_workload: one entry point for shipped traces, length sets and user trace files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecoserve.workload.arrivals import gamma_arrivals, native_rate, rescale
from ecoserve.workload.builtin import builtin_names, builtin_trace
from ecoserve.workload.custom import read_trace_file
from ecoserve.workload.spec import RequestSpec
from ecoserve.workload.trace import Trace


def workload_names() -> list[str]:
    """Names load_workload accepts besides a file path."""
    return builtin_names()


def _trace(name_or_path: str) -> Trace:
    if name_or_path in builtin_names():
        return builtin_trace(name_or_path)
    if Path(name_or_path).is_file():
        return read_trace_file(name_or_path)
    raise ValueError(
        f"unknown workload {name_or_path!r}: not one of {builtin_names()} and not a file"
    )


def _check_args(num_requests: int | None, rate: float | None, burstiness: float, start: int) -> None:
    if num_requests is not None and num_requests < 1:
        raise ValueError(f"num_requests must be >= 1, got {num_requests}")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0, got {burstiness}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")


def load_workload(
    name_or_path: str,
    num_requests: int | None = None,
    rate: float | None = None,
    seed: int = 0,
    burstiness: float = 1.0,
    start: int = 0,
) -> list[RequestSpec]:
    """Requests sorted by arrival, the first at 0 s.

    Timed traces (azure-*, files with `arrival`): rows start.. in trace order, native timing, or
    gaps scaled so the slice's mean rate is `rate`. Length sets (sharegpt, arxiv, files without
    `arrival`): a seeded shuffle of the rows, from position `start`, with Gamma(burstiness) gaps of
    mean 1/rate; `rate` is required.
    """
    _check_args(num_requests, rate, burstiness, start)
    trace = _trace(name_or_path)
    available = len(trace) - start
    count = available if num_requests is None else num_requests
    if count < 1 or count > available:
        raise ValueError(
            f"{name_or_path}: asked for {count} requests from offset {start}, "
            f"but it has {len(trace)} rows"
        )
    rng = np.random.default_rng(seed)
    if trace.arrival is None:
        if rate is None:
            raise ValueError(f"{name_or_path} has no timestamps: give a rate (requests/s)")
        rows = rng.permutation(len(trace))[start : start + count]
        arrival = gamma_arrivals(count, rate, burstiness, rng)
    else:
        if burstiness != 1.0:
            raise ValueError(
                f"{name_or_path} replays its own arrival times; burstiness applies only to length sets"
            )
        rows = np.arange(start, start + count)
        arrival = trace.arrival[rows] - trace.arrival[start]
        if rate is not None and count > 1:
            arrival = rescale(arrival, rate)
    prompts = [None] * count if trace.prompt is None else [trace.prompt[i] for i in rows]
    return [
        RequestSpec(a, p, o, text)
        for a, p, o, text in zip(
            arrival.tolist(),
            trace.prompt_len[rows].tolist(),
            trace.output_len[rows].tolist(),
            prompts,
        )
    ]


@dataclass(frozen=True, slots=True)
class WorkloadStats:
    """Native shape of a workload; rate and duration are None for length sets."""

    name: str
    num_requests: int
    mean_prompt_len: float
    mean_output_len: float
    native_rate: float | None
    duration: float | None


def workload_stats(name_or_path: str) -> WorkloadStats:
    """Whole-trace statistics, for docs and for sizing rates against the limit."""
    trace = _trace(name_or_path)
    timed = trace.arrival is not None and trace.arrival[-1] > 0
    return WorkloadStats(
        name=name_or_path,
        num_requests=len(trace),
        mean_prompt_len=float(trace.prompt_len.mean()),
        mean_output_len=float(trace.output_len.mean()),
        native_rate=native_rate(trace.arrival) if timed else None,
        duration=float(trace.arrival[-1]) if timed else None,
    )
