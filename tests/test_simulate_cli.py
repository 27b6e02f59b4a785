"""`ecoserve simulate` as a user runs it: a real process, real trace, files on disk."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecoserve.sim.options import check_options

REQUIRED = {
    "policy", "rate", "throughput_rps", "ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "itl_p99",
    "e2e_p50", "e2e_p99", "jct_mean", "slo_attainment", "goodput_rps", "preemptions", "kv_util_mean",
    "sched_us_per_iter", "sim_speedup", "num_requests", "completed", "rejected", "refused", "truncated",
    "dropped",
}


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}  # what a log or an 80-column terminal gets
    return subprocess.run(
        [sys.executable, "-m", "ecoserve", "simulate", *args], capture_output=True, text=True, timeout=300, env=env
    )


def assert_readable_at_80_columns(text: str) -> None:
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text  # nothing cut


def test_rates_write_summary_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = simulate(
        "--workload", "azure-code", "--policy", "ecoserve-half-reservation", "--policy", "vllm", "--rate", "1",
        "--rate", "3", "--num-requests", "120", "--predictor", "oracle", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["results"]
    assert [(r["policy"], r["rate"]) for r in rows] == [
        ("ecoserve-half-reservation", 1.0), ("vllm", 1.0), ("ecoserve-half-reservation", 3.0), ("vllm", 3.0)
    ]
    over = summary["meta"]["overlong_requests"]
    assert over > 0 and summary["meta"]["overlong"] == "reject"  # azure-code prompts reach 7.4k tokens
    for row in rows:
        assert REQUIRED <= row.keys()
        assert row["num_requests"] == 120 and row["rejected"] == over
        assert row["completed"] + row["refused"] == 120 - over  # refused: overload control
        assert 0 < row["throughput_rps"] and 0 <= row["slo_attainment"] <= (120 - over) / 120
        assert row["ttft_p50"] <= row["ttft_p99"] and row["e2e_p50"] <= row["e2e_p99"]
    assert summary["capacity"] is None
    report = (out / "report.md").read_text()
    assert "ecoserve-half-reservation" in report and f"{over} of 120 requests" in report
    said = " ".join(done.stderr.split())  # notes wrap at 80 columns
    assert f"{over} of 120 requests" in said and "rejected at arrival" in said
    assert_readable_at_80_columns(done.stdout)
    for png in ("latency_vs_rate.png", "kv_util.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "Warning" not in done.stderr  # no library warning leaks to the terminal


def test_drop_passes_over_overlong_rows_and_rates_cover_what_runs(tmp_path: Path) -> None:
    out = tmp_path / "drop"
    done = simulate("--workload", "azure-conv", "--policy", "vllm", "--rate", "2", "--num-requests", "150",
                    "--overlong", "drop", "--predictor", "oracle", "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    row = summary["results"][0]
    assert row["num_requests"] == row["completed"] == 150 and row["rejected"] == 0 and row["dropped"] > 0
    assert summary["meta"]["rates_cover"] == "the requests that run"
    assert "passed over" in " ".join(done.stderr.split())


def test_capacity_search_reports_brackets_probes_and_bounds(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    done = simulate(
        "--workload", "sharegpt", "--model", "llama-3-8b", "--policy", "ecoserve-oracle", "--policy", "vllm-v0",
        "--capacity", "--criterion", "itl", "--num-requests", "100", "--predictor", "oracle", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["capacity"]) == {"ecoserve-oracle", "vllm-v0"}
    assert summary["meta"]["criterion"] == "itl"
    for policy, capacity in summary["capacity"].items():
        low, high = summary["capacity_bracket"][policy]
        probes = summary["capacity_probes"][policy]
        assert low == capacity and (high is None or high > low)
        assert [p["rate"] for p in probes] == sorted(p["rate"] for p in probes)
        assert max((p["rate"] for p in probes if p["met"]), default=0.0) == capacity
    assert_readable_at_80_columns(done.stdout)
    assert "capacity probes of vllm-v0, by rate" in done.stdout
    assert (out / "kv_util.png").stat().st_size > 10_000  # the run at capacity, not an empty plot


def test_a_search_that_never_fails_reports_a_lower_bound(tmp_path: Path) -> None:
    out = tmp_path / "bound"
    done = simulate("--workload", "azure-conv", "--model", "llama-3-8b", "--policy", "vllm", "--capacity",
                    "--slo-target", "0.01", "--e2e-bound", "10000", "--num-requests", "30",
                    "--predictor", "oracle", "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    low, high = summary["capacity_bracket"]["vllm"]
    assert high is None and summary["meta"]["capacity_lower_bound"] == ["vllm"]
    assert summary["meta"]["capacity_above_limit"] == ["vllm"]
    said = " ".join(done.stdout.split())
    assert f">= {low:.2f}" in said and "only a lower bound" in said and "above the steady-state limit" in said
    assert f">= {low:.2f}" in (out / "report.md").read_text()


@pytest.mark.parametrize(("args", "says"), [
    ((), "--rate"),
    (("--policy", "fifo", "--rate", "1"), "fifo"),
    (("--rate", "0"), "--rate"),
    (("--rate", "1", "--num-requests", "0"), "--num-requests"),
    (("--rate", "1", "--watermark", "1.5"), "--watermark"),
    (("--rate", "1", "--criterion", "itl"), "--criterion applies only with --capacity"),
    (("--capacity", "--itl-bound", "0.2"), "--itl-bound applies only to --criterion itl"),
    (("--rate", "1", "--policy", "distserve", "--num-workers", "2"), "--num-workers applies only to colocated"),
    (("--rate", "1", "--policy", "ecoserve", "--token-budget", "4096"), "--token-budget applies only to"),
    (("--rate", "1", "--router", "round-robin"), "--router needs --num-workers above 1"),
    (("--rate", "1", "--model", "llama-2-70b"), "no cost model for llama-2-70b"),
    (("--rate", "1", "--burstiness", "0.5"), "burstiness applies only to length sets"),
    (("--capacity", "--workload", "sharegpt"), "cannot reach --slo-target"),
])
def test_bad_arguments_are_usage_errors(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    done = simulate(*args, "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and says in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "x").exists()


def test_missing_trace_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = simulate("--workload", str(tmp_path / "none.csv"), "--rate", "1", "--out", str(tmp_path / "y"))
    assert missing.returncode == 2 and "none.csv" in missing.stderr


def test_options_acting_on_some_policies_warn() -> None:
    values = {"capacity": False, "criterion": "slo", "num_workers": 2}
    errors, warnings = check_options(["num_workers"], values, ["ecoserve", "distserve"])
    assert errors == [] and warnings == ["--num-workers does not apply to distserve"]
    errors, warnings = check_options(["iteration_target"], values, ["vllm", "vllm-budget"])
    assert errors == [] and warnings == ["--iteration-target does not apply to vllm"]
    assert check_options([], values, ["vllm"]) == ([], [])
