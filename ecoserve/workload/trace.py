"""A workload's rows as columns, cleaned once, so loaders slice arrays instead of re-parsing."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Trace:
    """Rows of a trace. `arrival` is None for length sets (no timestamps); else sorted, from 0."""

    prompt_len: np.ndarray
    output_len: np.ndarray
    arrival: np.ndarray | None = None
    prompt: tuple[str, ...] | None = None
    block_hashes: tuple[tuple[int, ...], ...] | None = None  # per row (prefix.py), when the trace has them

    def __len__(self) -> int:
        return len(self.prompt_len)


def make_trace(
    source: str,
    prompt_len: npt.ArrayLike,
    output_len: npt.ArrayLike,
    arrival: npt.ArrayLike | None = None,
    prompt: list[str] | None = None,
    block_hashes: list[tuple[int, ...]] | None = None,
) -> Trace:
    """Validate rows into a Trace: drop rows that cannot be served, sort by arrival, rebase to 0.

    A row with prompt_len < 1 or output_len < 1 is dropped, not clipped: clipping would invent a
    token the source never recorded. Each drop is reported with a warning naming the source.
    """
    prompt_len = np.asarray(prompt_len, dtype=np.int64)
    output_len = np.asarray(output_len, dtype=np.int64)
    keep = (prompt_len >= 1) & (output_len >= 1)
    if arrival is not None:
        arrival = np.asarray(arrival, dtype=np.float64)
        if not np.isfinite(arrival).all():
            raise ValueError(f"{source}: arrival times must be finite numbers")
    dropped = int(len(keep) - keep.sum())
    if dropped:
        warnings.warn(
            f"{source}: dropped {dropped} of {len(keep)} rows with prompt_len < 1 or output_len < 1",
            stacklevel=3,
        )
    order = np.flatnonzero(keep)
    if arrival is not None:
        order = order[np.argsort(arrival[order], kind="stable")]
    if len(order) == 0:
        raise ValueError(f"{source}: no usable rows")
    rebased = None if arrival is None else arrival[order] - arrival[order[0]]
    trace = Trace(
        prompt_len=prompt_len[order],
        output_len=output_len[order],
        arrival=rebased,
        prompt=None if prompt is None else tuple(prompt[i] for i in order),
        block_hashes=None if block_hashes is None else tuple(block_hashes[i] for i in order),
    )
    for column in (trace.prompt_len, trace.output_len, trace.arrival):
        if column is not None:
            column.flags.writeable = False  # traces are cached and shared between loads
    return trace
