"""select_workload: rows that do not fit a context are passed over and counted; tied arrival
stamps (coarse timestamps) are spread within the trace's resolution, seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecoserve.workload import load_workload, select_workload
from ecoserve.workload.arrivals import count_ties, spread_within, timestamp_resolution


def test_resolution_is_the_coarsest_5_2_1_step_dividing_every_stamp() -> None:
    assert timestamp_resolution(np.array([0.0, 1.0, 1.0, 2.0, 5.0])) == 1.0
    assert timestamp_resolution(np.array([0.0, 0.001, 0.003, 0.003])) == 0.001
    assert timestamp_resolution(np.array([0.0, 5.0, 5.0, 15.0, 40.0])) == 5.0
    assert timestamp_resolution(np.array([0.0, 20.0, 40.0, 100.0])) == 20.0  # not coarser than a gap
    assert timestamp_resolution(np.array([0.0, 0.25, 0.5])) == pytest.approx(0.05)
    assert timestamp_resolution(np.random.default_rng(0).uniform(0, 100, 50)) is None
    assert timestamp_resolution(np.zeros(4)) is None
    # The shipped Azure traces are microsecond stamps without ties.
    azure = load_workload("azure-conv", num_requests=2000)
    assert timestamp_resolution(np.array([s.arrival for s in azure])) == pytest.approx(1e-6)


def test_ties_are_spread_within_their_stamp_and_order_between_stamps_is_kept() -> None:
    stamps = np.repeat(np.arange(100.0), 10)  # 10 requests per whole second
    assert count_ties(stamps) == 1000 and count_ties(np.arange(5.0)) == 0
    spread = spread_within(stamps, 1.0, np.random.default_rng(0))
    assert spread[0] == 0.0 and (np.diff(spread) > 0).all()
    # Each request stays within one resolution of its own stamp (the rebase to 0 shifts all).
    assert np.all(np.abs(spread - stamps) < 1.0)
    gaps = np.diff(spread)
    assert 0.05 < gaps.mean() < 0.15  # 10 per second, spread over the second, not bunched


def _coarse_trace(tmp_path: Path) -> Path:
    """A trace stamped to 5 s: bursts of 8 tied requests, one burst per stamp."""
    path = tmp_path / "coarse.csv"
    rows = ["arrival,prompt_len,output_len"]
    rows += [f"{5 * (i // 8)},{100 + i},{20}" for i in range(400)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_coarse_trace_ties_are_spread_seeded_and_can_be_kept(tmp_path: Path) -> None:
    path = str(_coarse_trace(tmp_path))
    w = select_workload(path, rate=5.0, seed=3)
    assert w.tied == 400 and w.tie_resolution == 5.0
    arrival = np.array([s.arrival for s in w.specs])
    assert (np.diff(arrival) > 0).all()  # no two requests in the same instant at any rate
    assert [s.prompt_len for s in w.specs] == sorted(s.prompt_len for s in w.specs)  # trace order kept
    assert select_workload(path, rate=5.0, seed=3).specs == w.specs
    assert select_workload(path, rate=5.0, seed=4).specs != w.specs
    kept = select_workload(path, rate=5.0, spread_ties=False)
    assert kept.tie_resolution is None and kept.tied == 400
    assert np.count_nonzero(np.diff([s.arrival for s in kept.specs]) == 0) == 350
    # The mean rate is still the one asked for.
    assert (len(arrival) - 1) / arrival[-1] == pytest.approx(5.0)


def test_max_len_passes_over_rows_that_do_not_fit_and_counts_them() -> None:
    everything = load_workload("azure-conv", num_requests=1000)
    too_long = sum(s.prompt_len + s.output_len > 4096 for s in everything)
    assert too_long > 0
    fit = select_workload("azure-conv", num_requests=1000, max_len=4096)
    assert len(fit.specs) == 1000 and all(s.prompt_len + s.output_len <= 4096 for s in fit.specs)
    assert fit.skipped_overlong >= too_long  # 1000 fitting rows reach further into the trace
    first = select_workload("azure-conv", num_requests=1000 - too_long, max_len=4096)
    assert first.skipped_overlong == too_long
    assert first.specs == [s for s in everything if s.prompt_len + s.output_len <= 4096]
    # Length sets: the same seeded shuffle, overlong rows left out.
    shuffled = select_workload("sharegpt", num_requests=500, rate=2.0, seed=1, max_len=4096)
    assert len(shuffled.specs) == 500 and shuffled.skipped_overlong > 50
    with pytest.raises(ValueError, match="within 4096 tokens"):
        select_workload("azure-code", num_requests=8000, max_len=4096)
