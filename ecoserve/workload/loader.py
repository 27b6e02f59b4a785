"""load_workload: one entry point for shipped traces, length sets and user trace files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecoserve.workload import conversations
from ecoserve.workload.arrivals import (
    count_ties,
    gamma_arrivals,
    native_rate,
    rescale,
    spread_within,
    timestamp_resolution,
)
from ecoserve.workload.builtin import builtin_names, builtin_trace
from ecoserve.workload.custom import read_trace_file
from ecoserve.workload.spec import RequestSpec
from ecoserve.workload.trace import Trace


def workload_names() -> list[str]:
    """Names load_workload accepts besides a file path."""
    return [*builtin_names(), conversations.NAME]


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


@dataclass(frozen=True, slots=True)
class Workload:
    """Requests to send, and what was done to the trace's rows to get them."""

    specs: list[RequestSpec]
    skipped_overlong: int = 0  # rows passed over because prompt + output exceed max_len
    tie_resolution: float | None = None  # s; set when tied stamps were spread within it
    tied: int = 0  # requests whose arrival stamp another request shared


def load_workload(name_or_path: str, *args: Any, **kwargs: Any) -> list[RequestSpec]:
    """The requests of select_workload(name_or_path, ...), same arguments."""
    return select_workload(name_or_path, *args, **kwargs).specs


def _fitting(rows: np.ndarray, trace: Trace, max_len: int | None) -> np.ndarray:
    if max_len is None:
        return rows
    return rows[trace.prompt_len[rows] + trace.output_len[rows] <= max_len]


def select_workload(
    name_or_path: str,
    num_requests: int | None = None,
    rate: float | None = None,
    seed: int = 0,
    burstiness: float = 1.0,
    start: int = 0,
    max_len: int | None = None,
    spread_ties: bool = True,
) -> Workload:
    """Requests sorted by arrival, the first at 0 s.

    Timed traces (azure-*, files with `arrival`): rows start.. in trace order, native timing, or
    gaps scaled so the slice's mean rate is `rate`. Length sets (sharegpt, arxiv, files without
    `arrival`): a seeded shuffle of the rows, from position `start`, with Gamma(burstiness) gaps of
    mean 1/rate; `rate` is required.

    max_len: rows whose prompt + output exceed it are passed over (counted in skipped_overlong),
    so all `num_requests` fit and the rate is the rate of the requests that run.
    spread_ties: when stamps repeat, each stamp is spread uniformly (seeded) within the trace's
    timestamp resolution before scaling, since coarse stamps make bursts no client sent.
    """
    _check_args(num_requests, rate, burstiness, start)
    if name_or_path == conversations.NAME:
        return _conversations(num_requests, rate, seed, burstiness, start, max_len)
    trace = _trace(name_or_path)
    rng = np.random.default_rng(seed)
    order = np.arange(len(trace)) if trace.arrival is not None else rng.permutation(len(trace))
    candidates = _fitting(order[start:], trace, max_len)
    available = len(candidates)
    count = available if num_requests is None else num_requests
    if count < 1 or count > available:
        fit = "" if max_len is None else f" within {max_len} tokens"
        raise ValueError(
            f"{name_or_path}: asked for {count} requests from offset {start}, "
            f"but it has {len(trace)} rows ({available}{fit} from there)"
        )
    rows = candidates[:count]
    last = start + int(np.flatnonzero(order[start:] == rows[-1])[0])
    skipped = (last - start + 1) - count
    resolution, tied = None, 0
    if trace.arrival is None:
        if rate is None:
            raise ValueError(f"{name_or_path} has no timestamps: give a rate (requests/s)")
        arrival = gamma_arrivals(count, rate, burstiness, rng)
    else:
        if burstiness != 1.0:
            raise ValueError(
                f"{name_or_path} replays its own arrival times; burstiness applies only to length sets"
            )
        arrival = trace.arrival[rows] - trace.arrival[rows[0]]
        tied = count_ties(arrival)
        if tied and spread_ties:
            resolution = timestamp_resolution(trace.arrival)
            if resolution is not None:
                arrival = spread_within(arrival, resolution, rng)
        if rate is not None and count > 1:
            arrival = rescale(arrival, rate)
    prompts = [None] * count if trace.prompt is None else [trace.prompt[i] for i in rows]
    hashes = [None] * count if trace.block_hashes is None else [trace.block_hashes[i] for i in rows]
    specs = [
        RequestSpec(a, p, o, text, h)
        for a, p, o, text, h in zip(
            arrival.tolist(),
            trace.prompt_len[rows].tolist(),
            trace.output_len[rows].tolist(),
            prompts,
            hashes,
        )
    ]
    return Workload(specs, skipped, resolution, tied)


def _conversations(
    num_requests: int | None, rate: float | None, seed: int, burstiness: float, start: int, max_len: int | None
) -> Workload:
    """The multi-turn generator; `start` reseeds it for a disjoint sample, as for length sets."""
    if rate is None or num_requests is None:
        raise ValueError(f"{conversations.NAME} is generated: give a rate (requests/s) and a number of requests")
    rng_seed = np.random.SeedSequence([seed, start])
    if max_len is None:
        return Workload(conversations.multi_turn(num_requests, rate, rng_seed, burstiness))
    # Passing over turns whose history outgrew the context: generate more until enough fit.
    want, extra = num_requests, 0
    while True:
        specs = conversations.multi_turn(want + extra, rate, rng_seed, burstiness)
        fit = [s for s in specs if s.prompt_len + s.output_len <= max_len]
        if len(fit) >= want:
            kept = fit[:want]
            return Workload(kept, skipped_overlong=specs.index(kept[-1]) + 1 - want)
        extra += want - len(fit) + 16


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
