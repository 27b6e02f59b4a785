"""Policies on the simulator: every request finishes, the ledger stays sound, and each policy keeps
the rules DESIGN section 4 gives it."""

from dataclasses import replace

import pytest

from ecoserve.core.cost_model import CostModel
from ecoserve.core.kv_ledger import KVLedger
from ecoserve.core.policies import POLICY_NAMES, PolicyOptions, make_policy
from ecoserve.core.policies.vllm import VllmConfig, VllmPolicy
from ecoserve.core.request import Phase, Prediction, Request
from ecoserve.core.scheduler import WorkerScheduler
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.simulator import Simulator
from ecoserve.workload import load_workload

SPECS = load_workload("azure-conv", num_requests=150, rate=6.0, seed=1)
TIGHT = ClusterConfig(kv_blocks=900)  # ~14k tokens: KV is the bottleneck


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every ledger invariant after every iteration of every worker."""
    update = WorkerScheduler.update

    def checked_update(self, plan, now, stopped=frozenset()):  # type: ignore[no-untyped-def]
        finished = update(self, plan, now, stopped)
        self.ledger.check()
        return finished

    monkeypatch.setattr(WorkerScheduler, "update", checked_update)


def run(policy: str, cluster: ClusterConfig = TIGHT, predictor: str = "oracle"):  # type: ignore[no-untyped-def]
    sim = Simulator(replace(cluster, policy=policy), seed=0)
    result = sim.run(SPECS, predictor)  # type: ignore[arg-type]
    return sim, result


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_request_finishes_with_its_length(policy: str, checked: None) -> None:
    sim, result = run(policy)
    assert result.rejected_overlong == sum(s.prompt_len + s.output_len > 4096 for s in SPECS) > 0
    assert result.rejected_kv == 0 and result.truncated == 0
    assert result.num_requests == len(SPECS)
    # Every request is served to its length, or refused by overload control (ecoserve's shedding).
    assert len(result.records) + result.refused == len(SPECS) - result.rejected_overlong
    sheds = policy.startswith("ecoserve") and make_policy(policy, CostModel.load("llama-2-7b", "a100-40gb")).config.overload == "shed"
    assert result.refused == 0 or sheds
    if not result.refused:
        expected = sorted(s.output_len for s in SPECS if s.prompt_len + s.output_len <= 4096)
        assert sorted(r.output_len for r in result.records) == expected
    for worker in sim.workers:
        assert worker.sched.ledger.free == worker.sched.ledger.capacity
        assert not worker.sched.requests


def test_kv_pressure_preempts_vllm_but_not_ecoserve_with_true_lengths() -> None:
    _, vllm = run("vllm")
    _, oracle = run("ecoserve-oracle")
    _, reserving = run("ecoserve-reservation")
    assert vllm.stats.preemptions > 0
    assert oracle.stats.preemptions == 0  # the forecast of exact lengths never runs out of KV
    assert reserving.stats.overruns == 0  # oracle predictions: no reservation is outgrown


def test_noisy_predictions_overrun_reservations_and_are_extended_not_lost(checked: None) -> None:
    _, result = run("ecoserve-reservation", predictor="noisy")
    assert result.stats.overruns > 0
    assert result.stats.extensions > 0
    assert len(result.records) == result.num_requests - result.rejected - result.refused


def test_pipelining_lends_reserved_kv(checked: None) -> None:
    _, lending = run("ecoserve-reservation", predictor="noisy")
    _, no_lending = run("ecoserve-reservation-no-pipelining", predictor="noisy")
    assert lending.stats.loans > 0
    assert no_lending.stats.loans == 0


def test_vllm_v0_steps_are_all_prefill_or_all_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    plans = []
    schedule = WorkerScheduler.schedule

    def spy(self, now):  # type: ignore[no-untyped-def]
        plan = schedule(self, now)
        plans.append((plan.num_prefills, plan.num_decodes))
        return plan

    monkeypatch.setattr(WorkerScheduler, "schedule", spy)
    run("vllm-v0")
    assert any(p for p, _ in plans) and any(d for _, d in plans)
    assert all(p == 0 or d == 0 for p, d in plans)


@pytest.mark.parametrize(("policy", "model", "workload"), [
    ("ecoserve", "llama-2-7b", "azure-conv"),
    # Prompts up to 7.4k tokens: later chunks sit behind long prefixes, which the budget must price.
    ("ecoserve", "llama-3-8b", "azure-code"),
    ("vllm-budget", "llama-3-8b", "azure-code"),
])
def test_time_budgeted_iterations_stay_within_the_target(
    monkeypatch: pytest.MonkeyPatch, policy: str, model: str, workload: str
) -> None:
    cost = CostModel.load(model, "a100-40gb")
    over = []
    schedule = WorkerScheduler.schedule

    def spy(self, now):  # type: ignore[no-untyped-def]
        plan = schedule(self, now)
        if plan.num_prefills and plan.num_decodes:
            over.append(cost.iteration_time(*plan.shape()) > 0.09 * 1.02)
        return plan

    monkeypatch.setattr(WorkerScheduler, "schedule", spy)
    specs = load_workload(workload, num_requests=150, rate=6.0 if workload == "azure-conv" else 1.0, seed=1)
    Simulator(ClusterConfig(model=model, policy=policy)).run(specs, "oracle")
    assert over and sum(over) / len(over) < 0.02


def test_same_seed_same_result() -> None:
    a = run("ecoserve", predictor="noisy")[1].summary("ecoserve", 6.0)
    b = run("ecoserve", predictor="noisy")[1].summary("ecoserve", 6.0)
    assert replace(a, sim_speedup=0, sched_us_per_iter=0) == replace(b, sim_speedup=0, sched_us_per_iter=0)


def _request(rid: int, prompt: int, arrival: float = 0.0) -> Request:
    return Request(rid, arrival, prompt, max_tokens=100, prediction=Prediction(10, 20, 0), output_len=10)


def test_vllm_preempts_the_newest_and_admits_nothing_in_that_step() -> None:
    sched = WorkerScheduler(VllmPolicy(VllmConfig(max_num_batched_tokens=4096)), KVLedger(4, block_size=16))
    a, b = _request(1, 32), _request(2, 32)
    sched.add_request(a)
    sched.add_request(b)
    plan = sched.schedule(0.0)  # both prompts fit exactly: 2 + 2 blocks
    assert [r.id for r, _ in plan.items] == [1, 2]
    sched.update(plan, 0.1)
    sched.add_request(_request(3, 8))
    plan = sched.schedule(0.2)  # a's first decode needs a 3rd block: b, the newest, is preempted
    assert plan.preempted == [b]
    assert b.phase is Phase.WAITING_PT and b.num_computed == 0 and sched.waiting[0] is b
    assert [r.id for r, _ in plan.items] == [1]  # request 3 was not admitted in this step
    sched.ledger.check()


def test_vllm_admission_stops_at_the_first_misfit_but_ecoserve_looks_past_it() -> None:
    cost = CostModel.load("llama-2-7b", "a100-40gb")
    for policy, admitted in ((make_policy("vllm", cost), []), (make_policy("ecoserve-oracle", cost), [2])):
        sched = WorkerScheduler(policy, KVLedger(8, block_size=16))
        sched.add_request(_request(1, 200))  # 13 blocks: never fits in 8
        sched.add_request(_request(2, 16, arrival=0.01))
        plan = sched.schedule(0.0)
        assert [r.id for r, _ in plan.items] == admitted, policy.name


def test_unknown_policy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("fifo", CostModel.load("llama-2-7b", "a100-40gb"), PolicyOptions())
