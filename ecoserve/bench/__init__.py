"""`ecoserve bench`: replay a workload against a live server and measure it as vLLM's
serving benchmark does (TTFT, TPOT, ITL, E2E, throughput, goodput).

The metric definitions are ecoserve.metrics'; this package only sends requests, times the
streamed tokens and turns each attempt into a RequestRecord or a counted failure.
"""

from ecoserve.bench.attempt import Attempt
from ecoserve.bench.requests import build_requests
from ecoserve.bench.results import BenchResult, bench_result, summary_doc, write_outputs
from ecoserve.bench.run import BenchTarget, run_bench

__all__ = [
    "Attempt",
    "BenchResult",
    "BenchTarget",
    "bench_result",
    "build_requests",
    "run_bench",
    "summary_doc",
    "write_outputs",
]
