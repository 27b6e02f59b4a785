"""Requests longer than the model's context: rejected (and counted), passed over, or truncated;
rates, attainment and the limit always refer to one stated set of requests."""

from __future__ import annotations

import pytest

from ecoserve.core.cost_model import CostModel
from ecoserve.metrics import capacity_limit
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.sim.simulator import Simulator, fit_to_context
from ecoserve.workload import RequestSpec

N = 300


def experiment(mode: str) -> Experiment:
    return Experiment("azure-conv", N, predictor="oracle", overlong=mode)  # type: ignore[arg-type]


def test_reject_offers_every_request_and_counts_the_refused_as_misses() -> None:
    exp = experiment("reject")
    specs = exp.specs(2.0)
    over = sum(s.prompt_len + s.output_len > 4096 for s in specs)
    assert over > 0
    summary = exp.run("vllm", 2.0).summary("vllm", 2.0)
    assert summary.num_requests == N and summary.rejected == over
    assert summary.completed == N - over and summary.truncated == summary.dropped == 0
    assert summary.slo_attainment <= (N - over) / N  # refused requests miss their SLO


def test_drop_runs_only_rows_that_fit_at_the_asked_rate() -> None:
    exp = experiment("drop")
    result = exp.run("vllm", 2.0)
    summary = result.summary("vllm", 2.0)
    assert summary.num_requests == summary.completed == N and summary.rejected == 0
    assert summary.dropped > 0
    arrivals = [s.arrival for s in exp.specs(2.0)]
    assert (len(arrivals) - 1) / arrivals[-1] == pytest.approx(2.0)  # the rate of what runs
    with pytest.raises(ValueError, match="select only rows that fit"):
        Simulator(ClusterConfig()).run([RequestSpec(0.0, 4000, 200)], "oracle", overlong="drop")


def test_truncate_cuts_prompts_to_fit() -> None:
    assert fit_to_context(RequestSpec(0.0, 5000, 200), 4096) == RequestSpec(0.0, 3896, 200)
    assert fit_to_context(RequestSpec(0.0, 10, 5000), 4096) == RequestSpec(0.0, 1, 4095)
    exp = experiment("truncate")
    summary = exp.run("vllm", 2.0).summary("vllm", 2.0)
    assert summary.completed == summary.num_requests == N and summary.truncated > 0


def test_limit_is_in_offered_requests_per_second() -> None:
    exp = experiment("reject")
    cost = CostModel.load(exp.cluster.model, exp.cluster.gpu)
    offered = exp.specs(1.0)
    served = [s for s in offered if s.prompt_len + s.output_len <= 4096]
    assert len(served) < len(offered)
    # Refused requests cost nothing: the bound over the ones that run, divided by the share.
    bound = capacity_limit(served, cost, cost.kv_capacity_blocks() * 16, max_batch=1024)
    limit = exp.limit()
    assert limit.compute_bound == pytest.approx(bound.compute_bound * len(offered) / len(served))
    assert limit.kv_bound == pytest.approx(bound.kv_bound * len(offered) / len(served))
