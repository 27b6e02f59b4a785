"""The sim engine keeps the cost model's pace even though time.sleep wakes late."""

from __future__ import annotations

import time

from ecoserve.core.cost_model import CostModel
from ecoserve.engine import SamplingParams, StepItem
from ecoserve.engine.sim import SimEngine, sim_token


def test_steps_take_the_cost_models_time_in_total() -> None:
    cost = CostModel.load("llama-2-7b", "a100-40gb")
    engine = SimEngine(cost, num_blocks=64)
    params = SamplingParams(max_tokens=100)
    engine.step([StepItem(1, [1] * 32, 0, True, params)])
    target = cost.iteration_time(0, 0, 0, 0, 1, 33)  # one decode after a 32-token prompt
    started = time.perf_counter()
    for pos in range(32, 82):
        outputs, timing = engine.step([StepItem(1, [sim_token(1, pos)], pos, True, params)])
        assert outputs[0].token_id == sim_token(1, pos + 1)
    elapsed = time.perf_counter() - started
    # Never faster than the model; late wake-ups are taken back, so the total stays close to it.
    # The upper bound leaves room for a loaded CI machine.
    assert 50 * target * 0.99 <= elapsed <= 50 * target * 1.5 + 0.1


def test_time_scale_zero_does_not_sleep() -> None:
    engine = SimEngine(CostModel.load("llama-2-7b", "a100-40gb"), num_blocks=64, time_scale=0.0)
    started = time.perf_counter()
    for i in range(200):
        engine.step([StepItem(i, [1] * 16, 0, True, SamplingParams(max_tokens=1))])
        engine.release(i)
    assert time.perf_counter() - started < 1.0  # sleeping the cost model's time would take 1.9 s
