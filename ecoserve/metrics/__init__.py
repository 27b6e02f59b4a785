"""Serving metrics (vLLM benchmark definitions), capacity search, the limit, and reports.

Plots live in ecoserve.metrics.plots, imported on demand (it pulls in matplotlib).
"""

from ecoserve.metrics.capacity import (
    CapacityResult,
    Criterion,
    Probe,
    capacity_notes,
    deadline_ratio_p99,
    find_capacity,
    meets,
    search_capacity,
)
from ecoserve.metrics.limit import IterationCost, Limit, capacity_limit
from ecoserve.metrics.records import RequestRecord, e2e, e2e_deadline, meets_slo, tpot, ttft
from ecoserve.metrics.report import write_report_md, write_summary_json
from ecoserve.metrics.summary import RunSummary, summarize

__all__ = [
    "CapacityResult",
    "Criterion",
    "IterationCost",
    "Limit",
    "Probe",
    "RequestRecord",
    "RunSummary",
    "capacity_limit",
    "capacity_notes",
    "deadline_ratio_p99",
    "e2e",
    "e2e_deadline",
    "find_capacity",
    "search_capacity",
    "meets",
    "meets_slo",
    "summarize",
    "tpot",
    "ttft",
    "write_report_md",
    "write_summary_json",
]
