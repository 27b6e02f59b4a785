"""`ecoserve simulate` as a user runs it: a real process, real trace, files on disk."""

import json
import subprocess
import sys
from pathlib import Path

REQUIRED = {
    "policy", "rate", "throughput_rps", "ttft_p50", "ttft_p99", "tpot_p50", "tpot_p99", "itl_p99",
    "e2e_p50", "e2e_p99", "jct_mean", "slo_attainment", "goodput_rps", "preemptions", "kv_util_mean",
    "sched_us_per_iter", "sim_speedup",
}


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecoserve", "simulate", *args], capture_output=True, text=True, timeout=300
    )


def test_rates_write_summary_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = simulate(
        "--workload", "azure-code", "--policy", "ecoserve", "--policy", "vllm", "--rate", "1", "--rate", "3",
        "--num-requests", "120", "--predictor", "oracle", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["results"]
    assert [(r["policy"], r["rate"]) for r in rows] == [("ecoserve", 1.0), ("vllm", 1.0), ("ecoserve", 3.0), ("vllm", 3.0)]
    for row in rows:
        assert REQUIRED <= row.keys()
        assert 0 < row["throughput_rps"] and 0 <= row["slo_attainment"] <= 1
        assert row["ttft_p50"] <= row["ttft_p99"] and row["e2e_p50"] <= row["e2e_p99"]
    assert summary["capacity"] is None
    assert "ecoserve" in (out / "report.md").read_text()
    for png in ("latency_vs_rate.png", "kv_util.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_capacity_search_reports_each_policy(tmp_path: Path) -> None:
    out = tmp_path / "cap"
    done = simulate(
        "--workload", "sharegpt", "--policy", "ecoserve-oracle", "--policy", "vllm-v0", "--capacity",
        "--criterion", "itl", "--num-requests", "100", "--predictor", "oracle", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["capacity"]) == {"ecoserve-oracle", "vllm-v0"}
    assert all(c >= 0 for c in summary["capacity"].values())
    assert summary["meta"]["criterion"] == "itl"


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    no_rate = simulate("--out", str(tmp_path / "x"))
    assert no_rate.returncode == 2 and "--rate" in no_rate.stderr
    bad_policy = simulate("--policy", "fifo", "--rate", "1")
    assert bad_policy.returncode == 2 and "fifo" in bad_policy.stderr
    missing = simulate("--workload", str(tmp_path / "none.csv"), "--rate", "1", "--out", str(tmp_path / "y"))
    assert missing.returncode == 2 and "none.csv" in missing.stderr
