"""Metrics on hand-built records, capacity search on synthetic runs, the limit on a fake cost model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ecoserve.metrics import (
    CapacityResult,
    Criterion,
    Probe,
    RequestRecord,
    RunSummary,
    capacity_limit,
    deadline_ratio_p99,
    e2e,
    find_capacity,
    meets,
    meets_slo,
    search_capacity,
    summarize,
    tpot,
    ttft,
    write_report_md,
    write_summary_json,
)
from ecoserve.metrics.plots import plot_kv_util, plot_latency_vs_rate
from ecoserve.workload import RequestSpec


def record(arrival: float, ttft_s: float, out: int, gaps: list[float], preemptions: int = 0) -> RequestRecord:
    """A request with TTFT ttft_s whose token gaps are `gaps`; SLO TTFT 0.5 s, TPOT 0.2 s."""
    first = arrival + ttft_s
    return RequestRecord(arrival, first, first + sum(gaps), 100, out, 0.5, 0.2, np.array(gaps), preemptions)


# TTFT      0.1  0.2  0.3  0.4  1.0
# TPOT      .05  -    .1   .3   .2
# E2E       0.2  0.2  0.7  0.7  1.6
# meets SLO yes  yes  yes  no   no
RECORDS = [
    record(0.0, 0.1, 3, [0.05, 0.05]),
    record(1.0, 0.2, 1, []),
    record(2.0, 0.3, 5, [0.05, 0.15, 0.1, 0.1], preemptions=2),
    record(3.0, 0.4, 2, [0.3]),
    record(4.0, 1.0, 4, [0.2, 0.2, 0.2]),
]


def test_per_request_definitions() -> None:
    r = RECORDS[2]
    assert ttft(r) == pytest.approx(0.3)
    assert tpot(r) == pytest.approx(0.1)
    assert e2e(r) == pytest.approx(0.7)
    assert tpot(RECORDS[1]) == 0.0
    assert [meets_slo(r) for r in RECORDS] == [True, True, True, False, False]
    exact = RequestRecord(0.0, 0.5, 0.9, 1, 3, 0.5, 0.2, np.empty(0))  # both targets hit exactly
    assert meets_slo(exact)


def test_record_validation() -> None:
    with pytest.raises(ValueError, match="itl must hold"):
        RequestRecord(0.0, 0.1, 0.3, 10, 3, 1.0, 1.0, np.array([0.1]))
    with pytest.raises(ValueError, match="arrival <= first_token"):
        RequestRecord(1.0, 0.5, 2.0, 10, 2, 1.0, 1.0, np.array([1.5]))


def test_summarize_hand_computed() -> None:
    s = summarize(RECORDS, "p", 2.0, num_requests=6, overruns=4, kv_util_mean=0.5)
    assert (s.policy, s.rate, s.num_requests, s.completed) == ("p", 2.0, 6, 5)
    assert s.duration == pytest.approx(5.6)
    assert s.throughput_rps == pytest.approx(5 / 5.6)
    assert s.output_token_throughput == pytest.approx(15 / 5.6)
    # numpy linear interpolation: p at index q/100 * (n-1) of the sorted values.
    assert (s.ttft_p50, s.ttft_p90, s.ttft_p99) == pytest.approx((0.3, 0.76, 0.976))
    assert (s.tpot_p50, s.tpot_p90, s.tpot_p99) == pytest.approx((0.15, 0.27, 0.297))
    assert s.itl_p99 == pytest.approx(0.291)
    assert (s.e2e_p50, s.e2e_p90, s.e2e_p99) == pytest.approx((0.7, 1.24, 1.564))
    assert s.jct_mean == pytest.approx(0.68)
    assert s.slo_attainment == pytest.approx(3 / 6)  # the unfinished request missed its SLO
    assert s.goodput_rps == pytest.approx(3 / 5.6)
    assert (s.preemptions, s.overruns, s.kv_util_mean) == (2, 4, 0.5)
    assert summarize(RECORDS, "p", 2.0, preemptions=9).preemptions == 9


def test_summarize_edge_cases() -> None:
    empty = summarize([], "p", 1.0, num_requests=3)
    assert (empty.completed, empty.slo_attainment, empty.goodput_rps) == (0, 0.0, 0.0)
    assert math.isnan(empty.ttft_p99) and math.isnan(empty.itl_p99)
    assert empty.to_dict()["ttft_p99"] is None
    json.dumps(empty.to_dict(), allow_nan=False)
    single = summarize([RECORDS[1]], "p", 1.0)
    assert (single.tpot_p99, single.itl_p99) == (0.0, 0.0)  # no second token anywhere
    no_gaps = RequestRecord(0.0, 0.1, 0.5, 10, 3, 1.0, 1.0, np.empty(0))
    assert math.isnan(summarize([no_gaps], "p", 1.0).itl_p99)  # gaps not recorded: unmeasured
    with pytest.raises(ValueError, match="less than"):
        summarize(RECORDS, "p", 1.0, num_requests=4)


def test_criteria() -> None:
    s = summarize(RECORDS, "p", 2.0)  # slo_attainment 0.6, e2e_p99 1.564, itl_p99 0.291
    # E2E 0.2, 0.2, 0.7, 0.7, 1.6 over deadlines 0.5 + 0.2 * (out - 1) = 0.9, 0.5, 1.3, 0.7, 1.1:
    # ratios 0.222, 0.4, 0.538, 1.0, 1.4545 -> P99 1.0 + 0.96 * 0.4545.
    assert deadline_ratio_p99(RECORDS) == pytest.approx(1.0 + 0.96 * (1.6 / 1.1 - 1.0))
    assert not meets(s, RECORDS, Criterion("slo", slo_target=0.5))  # the last request is too late
    assert meets(s, RECORDS[:4], Criterion("slo", slo_target=0.5))  # all within their deadlines
    assert not meets(s, RECORDS, Criterion("itl", itl_p99_bound=0.3, slo_target=0.6))
    assert meets(s, RECORDS, Criterion("slo", e2e_p99_bound=2.0, slo_target=0.6))
    assert not meets(s, RECORDS, Criterion("slo", e2e_p99_bound=2.0, slo_target=0.61))
    assert meets(s, RECORDS, Criterion("itl", e2e_p99_bound=2.0, itl_p99_bound=0.3, slo_target=0.6))
    assert not meets(s, RECORDS, Criterion("itl", e2e_p99_bound=2.0, itl_p99_bound=0.25, slo_target=0.6))
    assert not meets(summarize([], "p", 1.0, num_requests=1), [], Criterion("itl", slo_target=0.0))
    with pytest.raises(ValueError, match="'slo' or 'itl'"):
        Criterion("p90")  # type: ignore[arg-type]


def synthetic(threshold: float, calls: list[float]):
    """A run that meets any SLO criterion exactly when rate <= threshold."""

    def evaluate(rate: float) -> tuple[RunSummary, list[RequestRecord]]:
        calls.append(rate)
        late = 0.0 if rate <= threshold else 10.0
        records = [RequestRecord(0.0, 0.1 + late, 0.3 + late, 10, 3, 0.5, 0.1, np.array([0.1, 0.1]))]
        return summarize(records, "p", rate), records

    return evaluate


def test_find_capacity_bisects_to_threshold() -> None:
    calls: list[float] = []
    seen = []
    result = find_capacity(synthetic(7.3, calls), Criterion(), lo=1.0, hi=20.0, progress=seen.append)
    assert 7.3 / 1.03 <= result.capacity <= 7.3 < result.upper
    assert result.upper - result.capacity <= 0.03 * result.capacity
    assert [p.rate for p in result.probes] == calls == [p.rate for p in seen]
    assert all(p.met == (p.rate <= 7.3) for p in result.probes)
    assert len(calls) <= 2 + 12


def test_find_capacity_expands_hi_then_bisects() -> None:
    calls: list[float] = []
    result = find_capacity(synthetic(30.0, calls), Criterion(), lo=1.0, hi=10.0, rel_tol=0.01)
    assert calls[:4] == [1.0, 10.0, 20.0, 40.0]
    assert 30.0 / 1.01 <= result.capacity <= 30.0 < result.upper


def test_find_capacity_reports_unbracketed_results() -> None:
    calls: list[float] = []
    below = find_capacity(synthetic(0.5, calls), Criterion(), lo=1.0, hi=4.0)
    assert (below.capacity, below.upper, calls) == (0.0, 1.0, [1.0])
    calls.clear()
    above = find_capacity(synthetic(1e6, calls), Criterion(), lo=1.0, hi=2.0, max_expand=3)
    assert (above.capacity, above.upper, calls) == (16.0, math.inf, [1.0, 2.0, 4.0, 8.0, 16.0])
    calls.clear()
    capped = find_capacity(synthetic(7.3, calls), Criterion(), lo=1.0, hi=20.0, max_iter=2)
    assert len(calls) == 4 and capped.capacity <= 7.3 < capped.upper
    with pytest.raises(ValueError, match="0 < lo < hi"):
        find_capacity(synthetic(1.0, calls), Criterion(), lo=2.0, hi=2.0)


def test_search_capacity_moves_down_and_keeps_every_probe() -> None:
    calls: list[float] = []
    found = search_capacity(synthetic(0.3, calls), Criterion(), hint=16.0)
    assert calls[:3] == [4.0, 1.0, 0.25]  # limit/4 fails, then the bracket moves down 4x twice
    assert 0.3 * 0.97 <= found.capacity <= 0.3 < found.upper
    assert [p.rate for p in found.probes] == calls and found.label() == f"{found.capacity:.2f}"
    never = search_capacity(synthetic(0.0, []), Criterion(), hint=16.0, tries=2)
    assert never.capacity == 0 and len(never.probes) == 2 and never.label() == "< 1.00"
    always = search_capacity(synthetic(1e9, []), Criterion(), hint=1.0)
    assert always.lower_bound and always.bracket == (16.0, None) and always.label() == ">= 16.00"


def results() -> list[RunSummary]:
    out = []
    for policy, slow in (("ecoserve", 1.0), ("vllm", 1.5)):
        for rate in (1.0, 2.0):
            recs = [record(i, 0.1 * slow * rate, 3, [0.05 * slow, 0.05 * slow]) for i in range(4)]
            out.append(summarize(recs, policy, rate, kv_util_mean=0.4, sim_speedup=50.0))
    return out


def _probe(rate: float, met: bool) -> Probe:
    return Probe(rate, summarize([record(0, 0.1, 3, [0.05, 0.05])], "vllm", rate), met)


# ecoserve met at every rate tried (a lower bound); vllm's bracket is [1.5, 1.6], probed out of order.
CAPACITY = {
    "ecoserve": CapacityResult(2.5, math.inf, []),
    "vllm": CapacityResult(1.5, 1.6, [_probe(1.0, True), _probe(1.6, False), _probe(1.5, True)]),
}


def test_summary_json_has_required_keys(tmp_path: Path) -> None:
    path = tmp_path / "out" / "summary.json"
    runs = results() + [summarize([], "vllm", 3.0, num_requests=2)]
    write_summary_json(path, runs, CAPACITY, {"trace": "azure-conv", "seed": np.int64(0)})
    doc = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    required = {
        "policy", "rate", "throughput_rps", "ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "itl_p99",
        "e2e_p50", "e2e_p99", "jct_mean", "slo_attainment", "goodput_rps", "preemptions",
        "kv_util_mean", "sched_us_per_iter", "sim_speedup",
    }
    assert len(doc["results"]) == 5
    assert all(required <= set(r) for r in doc["results"])
    assert [(r["policy"], r["rate"]) for r in doc["results"][:4]] == [
        ("ecoserve", 1.0), ("ecoserve", 2.0), ("vllm", 1.0), ("vllm", 2.0)
    ]
    assert doc["results"][4]["ttft_p99"] is None
    assert doc["capacity"] == {"ecoserve": 2.5, "vllm": 1.5}
    assert doc["capacity_bracket"] == {"ecoserve": [2.5, None], "vllm": [1.5, 1.6]}  # None: never failed
    assert [p["rate"] for p in doc["capacity_probes"]["vllm"]] == [1.0, 1.5, 1.6]  # by rate
    assert [p["met"] for p in doc["capacity_probes"]["vllm"]] == [True, True, False]
    assert doc["meta"] == {"trace": "azure-conv", "seed": 0}
    write_summary_json(path, runs, None, {})
    assert json.loads(path.read_text())["capacity"] is None


def test_report_md_tables(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    write_report_md(path, results(), CAPACITY, {"trace": "azure-conv"}, ["12 were rejected"], limit=2.0)
    text = path.read_text()
    for needle in ("- trace: azure-conv", "| ecoserve | >= 2.50 | 2.5 | none | 125% |", "| vllm | 1.50 | 1.5 | 1.6 | 75% |",
                   "### 1 req/s", "### 2 req/s", "### vllm", "- 12 were rejected", "only a lower bound",
                   "above the steady-state limit", "overruns: generations that outgrew"):
        assert needle in text
    probes = text[text.index("### Probes of vllm"):text.index("## By rate")]
    assert [line.split(" | ")[:2] for line in probes.splitlines() if line.startswith("| 1")] == [
        ["| 1", "yes"], ["| 1.5", "yes"], ["| 1.6", "no"]
    ]
    metrics_part = text[text.index("## By rate") : text.index("## Columns")]
    widths = {line.count("|") for line in metrics_part.splitlines() if line.startswith("|")}
    assert len(widths) == 1  # every metrics row has as many cells as its header
    assert metrics_part.count("| ecoserve |") == 2 and metrics_part.count("\n| 2 |") == 2
    # TTFT p99 of vllm at rate 2: 0.1 * 1.5 * 2 s = 300 ms.
    assert "| vllm | " in text and "| 300 |" in text


def test_plots_write_png(tmp_path: Path) -> None:
    plot_latency_vs_rate(results(), tmp_path / "lat.png")
    t = np.linspace(0, 10, 50)
    plot_kv_util({"ecoserve": (t, t / 10), "vllm": (t, np.full_like(t, 0.9))}, tmp_path / "kv" / "kv.png")
    for name in ("lat.png", "kv/kv.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


class FakeCost:
    """Linear iteration time: 10 ms + per prefill token + 0.1 ms per decode + 1 us per context token."""

    def __init__(self, per_prefill_token: float = 1e-3) -> None:
        self.per_prefill_token = per_prefill_token

    def iteration_time(self, num_prefills, prefill_tokens, prefill_sq, prefill_cross, num_decodes, decode_context):
        return 0.01 + self.per_prefill_token * prefill_tokens + 1e-4 * num_decodes + 1e-6 * decode_context


SPECS = [RequestSpec(0.0, 100, 3), RequestSpec(1.0, 300, 1)]
# KV token-iterations: 3*100 + 3 = 303 and 300; per running request (603 / 2) / 2 = 150.75 tokens.


def test_limit_hand_computed_compute_bound() -> None:
    limit = capacity_limit(SPECS, FakeCost(), kv_capacity_tokens=10_000, max_batch=4)
    step = 0.01 + 4e-4 + 1e-6 * 603  # 4 decodes, context round(4 * 150.75)
    assert (limit.batch, limit.decode_iteration) == (4, pytest.approx(step))
    assert limit.kv_fit == pytest.approx(10_000 / 150.75)
    assert limit.kv_bound == pytest.approx(4 / (2 * step))
    # Prefill adds 1 ms/token: 0.1 s and 0.3 s; two decode steps over two requests, 4 per step.
    assert limit.compute_bound == pytest.approx(1 / (0.2 + 1 * step / 4))
    assert (limit.capacity, limit.binding) == (limit.compute_bound, "compute")


def test_limit_hand_computed_kv_bound() -> None:
    limit = capacity_limit(SPECS, FakeCost(per_prefill_token=0.0), kv_capacity_tokens=500, max_batch=64)
    step = 0.01 + 3e-4 + 1e-6 * 452  # KV holds floor(500 / 150.75) = 3 running requests
    assert (limit.batch, limit.decode_iteration) == (3, pytest.approx(step))
    assert limit.kv_bound == pytest.approx(3 / (2 * step))
    assert limit.compute_bound == pytest.approx(1 / (1 * step / 3))
    assert (limit.capacity, limit.binding) == (limit.kv_bound, "kv")
    with pytest.raises(ValueError, match="less than one mean request"):
        capacity_limit(SPECS, FakeCost(), kv_capacity_tokens=100, max_batch=4)
