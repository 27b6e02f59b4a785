"""Workload loaders against the real shipped traces (and the upstream files they were copied from)."""

from __future__ import annotations

import csv
import datetime
import gzip
import hashlib
import json
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from ecoserve.workload import RequestSpec, load_workload, workload_names, workload_stats
from ecoserve.workload.builtin import builtin_trace


def _shipped(filename: str) -> bytes:
    return gzip.decompress((resources.files("ecoserve.workload") / "data" / filename).read_bytes())


# Size and sha256 of each upstream file, as the team's shared copy holds it (decompressed where
# that copy is gzipped); tests/data/NOTICE.md gives the upstream repository, path and commit.
ORIGINALS = {
    "azure_conv.csv.gz": (719188, "2f1e5b666d4e3055fdbba98598ce2ec307767b9064e03e2fa46676dbcc7d0bf8"),
    "azure_code.csv.gz": (320117, "54e9a6d2a4bd06ba1e060304b900abbc74cbea53de96506e60fe5bb4f2277fb6"),
    "sharegpt_8k_llama2_token_lengths.csv.gz": (
        949600, "6d6c296302a853e2669a674a96f269283e60c57e60363bd450588a1066919f9f"),
    "arxiv_summarization_llama2_token_lengths.csv.gz": (
        884932, "9d3580538d915ca75e4aaaa54590b42dbb17abc6d74c8913310cf07c232adcdc"),
    "mooncake_synthetic_trace.jsonl.gz": (
        1136313, "bd070915a98fc0ed264d7cfef2ce746002eb3076a695ec31ba2674c0111ec131"),
}


@pytest.mark.parametrize("shipped", sorted(ORIGINALS))
def test_shipped_data_equals_the_original(shipped: str) -> None:
    data = _shipped(shipped)
    assert (len(data), hashlib.sha256(data).hexdigest()) == ORIGINALS[shipped]


def test_notice_ships_with_data() -> None:
    notice = (resources.files("ecoserve.workload") / "data" / "NOTICE.md").read_text()
    for needle in ("CC-BY-4.0", "Splitwise", "Apache-2.0", "sarathi-serve", "MIT", "vidur", "Mooncake", "MT-bench"):
        assert needle in notice


def test_names() -> None:
    assert workload_names() == ["azure-conv", "azure-code", "sharegpt", "arxiv", "mooncake", "multi-turn"]


def test_azure_conv_native_timing_row_for_row() -> None:
    builtin_trace.cache_clear()
    specs = load_workload("azure-conv")
    rows = list(csv.reader(_shipped("azure_conv.csv.gz").decode().splitlines()))[1:]
    stamps = [datetime.datetime.fromisoformat(r[0]) for r in rows]  # microsecond precision
    assert len(specs) == len(rows) == 19366
    for spec, row, stamp in zip(specs, rows, stamps):
        assert spec.prompt_len == int(row[1]) and spec.output_len == int(row[2])
        assert spec.arrival == pytest.approx((stamp - stamps[0]).total_seconds(), abs=1e-6)
    assert specs[0].arrival == 0.0
    assert specs[-1].arrival == pytest.approx(3501.7219, abs=1e-3)  # SOURCES.md: 3501.7 s


@pytest.mark.parametrize("name", ["azure-conv", "azure-code"])
@pytest.mark.parametrize("rate", [1.0, 11.0])
def test_rate_scaling_hits_requested_mean_rate(name: str, rate: float) -> None:
    native = load_workload(name, num_requests=3000, start=500)
    scaled = load_workload(name, num_requests=3000, start=500, rate=rate)
    assert (len(scaled) - 1) / scaled[-1].arrival == pytest.approx(rate, rel=1e-9)
    # Only the clock changes: same rows, gaps proportional to the native ones.
    assert [(s.prompt_len, s.output_len) for s in scaled] == [(s.prompt_len, s.output_len) for s in native]
    ratio = np.array([s.arrival for s in scaled[1:]]) / np.array([s.arrival for s in native[1:]])
    assert np.allclose(ratio, ratio[0])
    # Counting arrivals in the first and second halves also sees the rate (within a few %),
    # because this slice of the trace has no large trend.
    arrivals = np.array([s.arrival for s in scaled])
    half = arrivals[-1] / 2
    assert np.sum(arrivals < half) / half == pytest.approx(rate, rel=0.1)


def test_start_offset_rebases_to_zero() -> None:
    full = load_workload("azure-code")
    part = load_workload("azure-code", num_requests=10, start=100)
    assert part[0].arrival == 0.0
    assert [s.arrival for s in part] == pytest.approx([s.arrival - full[100].arrival for s in full[100:110]])


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_arrivals_match_rate_and_burstiness(burstiness: float) -> None:
    specs = load_workload("sharegpt", num_requests=20000, rate=5.0, burstiness=burstiness, seed=3)
    arrivals = np.array([s.arrival for s in specs])
    gaps = np.diff(arrivals)
    assert arrivals[0] == 0.0 and (gaps >= 0).all()
    assert gaps.mean() == pytest.approx(0.2, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1 / np.sqrt(burstiness), rel=0.05)


def test_length_set_sampling_is_a_seeded_shuffle() -> None:
    everything = load_workload("arxiv", rate=1.0, seed=7)
    assert len(everything) == 28257
    # Without replacement: the full shuffle holds every row exactly once.
    stats = workload_stats("arxiv")
    assert np.mean([s.prompt_len for s in everything]) == pytest.approx(stats.mean_prompt_len)
    head = load_workload("arxiv", num_requests=200, rate=1.0, seed=7)
    tail = load_workload("arxiv", num_requests=100, rate=1.0, seed=7, start=100)
    lengths = lambda specs: [(s.prompt_len, s.output_len) for s in specs]  # noqa: E731
    assert lengths(head) == lengths(everything[:200])
    assert lengths(tail) == lengths(head[100:])
    assert load_workload("arxiv", num_requests=200, rate=1.0, seed=7) == head
    other = load_workload("arxiv", num_requests=200, rate=1.0, seed=8)
    assert lengths(other) != lengths(head)
    assert Counter(lengths(everything)) == Counter(lengths(load_workload("arxiv", rate=1.0, seed=8)))


def test_length_sets_need_a_rate() -> None:
    with pytest.raises(ValueError, match="give a rate"):
        load_workload("sharegpt", num_requests=10)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="burstiness applies only"):
        load_workload("azure-conv", rate=2.0, burstiness=0.5)
    with pytest.raises(ValueError, match="has 8819 rows"):
        load_workload("azure-code", num_requests=9000)
    with pytest.raises(ValueError, match="has 8819 rows"):
        load_workload("azure-code", num_requests=10, start=8815)
    with pytest.raises(ValueError, match="unknown workload"):
        load_workload("azure-chat")
    with pytest.raises(ValueError, match="rate must be > 0"):
        load_workload("sharegpt", rate=0.0)


def test_stats_match_sources_md() -> None:
    def shape(name: str) -> tuple[int, float, float]:
        st = workload_stats(name)
        return st.num_requests, round(st.mean_prompt_len, 1), round(st.mean_output_len, 1)

    assert shape("azure-conv") == (19366, 1154.7, 211.1)
    assert shape("azure-code") == (8819, 2047.8, 27.9)
    assert shape("sharegpt") == (30731, 2340.0, 438.7)
    assert shape("arxiv") == (28257, 2588.1, 291.4)
    conv, code, share = workload_stats("azure-conv"), workload_stats("azure-code"), workload_stats("sharegpt")
    assert conv.native_rate == pytest.approx(5.53, abs=0.005)
    assert conv.duration == pytest.approx(3501.7, abs=0.05)
    assert code.native_rate == pytest.approx(2.57, abs=0.005)
    assert share.native_rate is None and share.duration is None


def test_custom_csv_sorted_rebased_and_bad_rows_dropped(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(
        "id,arrival,prompt_len,output_len,prompt\n"
        '1,12.5,10,3,"hello, world"\n'
        "2,10.0,20,0,dropped\n"
        "3,11.0,30,5,second\n"
        '4,14.5,40,1,"multi\nline"\n'
    )
    with pytest.warns(UserWarning, match="dropped 1 of 4 rows"):
        specs = load_workload(str(path))
    assert specs == [
        RequestSpec(0.0, 30, 5, "second"),
        RequestSpec(1.5, 10, 3, "hello, world"),
        RequestSpec(3.5, 40, 1, "multi\nline"),
    ]
    with pytest.warns(UserWarning):
        fast = load_workload(str(path), rate=1.0)
    assert [s.arrival for s in fast] == pytest.approx([0.0, 1.5 * 2 / 3.5, 2.0])


def test_custom_jsonl_without_arrival_uses_gamma(tmp_path: Path) -> None:
    path = tmp_path / "lengths.jsonl.gz"
    rows = [{"prompt_len": 5 + i, "output_len": 1 + i, "prompt": f"p{i}"} for i in range(50)]
    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n\n")
    with pytest.raises(ValueError, match="give a rate"):
        load_workload(str(path))
    specs = load_workload(str(path), num_requests=20, rate=2.0, seed=1)
    assert len(specs) == 20 and specs[0].arrival == 0.0
    assert all(s.prompt == f"p{s.prompt_len - 5}" and s.output_len == s.prompt_len - 4 for s in specs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("arrival,prompt_len\n0,5\n", "lacks column"),
        ("arrival,prompt_len,output_len\n0,5,2\n,6,3\n", "arrival is given on 1 of 2 rows"),
        ("prompt_len,output_len\n5,2.5\n", "whole number"),
        ("prompt_len,output_len\nfive,2\n", "must be a number"),
    ],
)
def test_custom_csv_errors_are_clear(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_workload(str(path), rate=1.0)


def test_custom_file_needs_known_extension(tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    path.write_text("prompt_len,output_len\n5,2\n")
    with pytest.raises(ValueError, match=r"\.csv or \.jsonl"):
        load_workload(str(path), rate=1.0)
