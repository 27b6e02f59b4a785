"""`ecoserve bench` against the whole stack (`ecoserve up --engine sim`): 200 requests, none failed."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from up_process import ECOSERVE, start_up

from ecoserve.ledger.embedded import free_port


def test_a_200_request_bench_on_sim_workers_finishes_with_no_failures(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("prompt_len,output_len\n" + "".join(f"{64 + i % 64},{8 + i % 17}\n" for i in range(200)))
    http_port = free_port()
    up, _ = start_up("--engine", "sim", "--workers", "2", "--port", str(free_port()),
                     "--http-port", str(http_port), "--grpc-port", str(free_port()),
                     "--predictor-port", str(free_port()), "--log-dir", str(tmp_path / "logs"))
    try:
        out = tmp_path / "bench"
        bench = subprocess.run(
            [ECOSERVE, "bench", "--base-url", f"http://127.0.0.1:{http_port}", "--workload", str(trace),
             "--num-requests", "200", "--rate", "20", "--max-duration", "240", "--out", str(out)],
            capture_output=True, text=True, timeout=300,
        )
        assert bench.returncode == 0, bench.stdout + bench.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["completed"] == 200 and summary["failed"] == 0, summary.get("errors")
        assert 0 < summary["ttft_p50"] <= summary["ttft_p99"] and summary["request_throughput"] > 0
        assert (out / "report.md").read_text().strip()
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
