"""Workloads: shipped traces, length sets with Gamma arrivals, and user trace files."""

from ecoserve.workload.loader import (
    Workload,
    WorkloadStats,
    load_workload,
    select_workload,
    workload_names,
    workload_stats,
)
from ecoserve.workload.spec import RequestSpec

__all__ = [
    "RequestSpec",
    "Workload",
    "WorkloadStats",
    "load_workload",
    "select_workload",
    "workload_names",
    "workload_stats",
]
