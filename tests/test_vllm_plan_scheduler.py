"""The PlanScheduler against the installed vLLM release, with no model behind it: the
SchedulerOutput each plan becomes (what vLLM's model runner reads), through a prompt that arrives in
chunks, a decode, a preemption and its recompute, a refused plan and an abort. vLLM's scheduler
interface is not public and changed between the pinned releases (0.32 lists a resumed request in
`resumed_req_ids`, 0.33's V2 model runner takes it whole as a new one); this runs on each.
"""

from __future__ import annotations

import pytest

from ecoserve.core.hardware import MODELS
from ecoserve.engine.vllm.runtime import load_vllm

load_vllm()

from vllm.v1.outputs import ModelRunnerOutput  # noqa: E402
from vllm.v1.request import RequestStatus  # noqa: E402

from ecoserve.engine import SamplingParams  # noqa: E402
from ecoserve.engine.vllm.plan_scheduler import PlannedStep, PlanRefused, PlanScheduler  # noqa: E402
from ecoserve.engine.vllm.requests import new_request, set_prompt, vllm_sampling_params  # noqa: E402
from ecoserve.sim.vllm_real import VllmRealConfig, build_scheduler  # noqa: E402

BLOCKS, BS = 8, 16
PROMPT = list(range(100, 130))


@pytest.fixture
def sched() -> PlanScheduler:
    config = VllmRealConfig(max_num_batched_tokens=512, max_num_seqs=8, prefix_caching=False)
    scheduler, _ = build_scheduler(MODELS["llama-2-7b"], config, BLOCKS, BS, PlanScheduler)
    return scheduler


def step(sched: PlanScheduler, items: list[tuple[str, int]], sampled: list[list[int]], resend: frozenset[str] = frozenset()):
    """One planned step with the model's output faked: (the SchedulerOutput, vLLM's outputs by id)."""
    sched.plan(PlannedStep(items, resend))
    out = sched.schedule()
    ids = [rid for rid, _ in items]
    results = sched.update_from_output(out, ModelRunnerOutput(
        req_ids=ids, req_id_to_index={rid: i for i, rid in enumerate(ids)}, sampled_token_ids=sampled))
    return out, {o.request_id: o for eco in results.values() for o in eco.outputs}


def test_a_chunked_prompt_a_decode_a_preemption_and_its_recompute(sched: PlanScheduler) -> None:
    params = vllm_sampling_params(SamplingParams(temperature=0.0, max_tokens=10), {})
    request = new_request("1", PROMPT[:20], complete=False, params=params)
    sched.add_request(request)

    out, got = step(sched, [("1", 20)], [[]])  # the first chunk: all the engine knows of the prompt
    (new,) = out.scheduled_new_reqs
    assert new.req_id == "1" and len(new.prompt_token_ids) == 21, "the chunk, then one placeholder"
    assert out.num_scheduled_tokens == {"1": 20} and len(new.block_ids[0]) == 2 and not got

    set_prompt(request, PROMPT, complete=True)  # the last chunk brings the rest
    out, got = step(sched, [("1", 10)], [[7]], frozenset({"1"}))
    (new,) = out.scheduled_new_reqs
    assert new.prompt_token_ids == PROMPT and new.num_computed_tokens == 20, "sent whole again"
    assert len(new.block_ids[0]) == 2 and got["1"].new_token_ids == [7]

    out, got = step(sched, [("1", 1)], [[8]])  # a decode
    assert not out.scheduled_new_reqs and out.scheduled_cached_reqs.req_ids == ["1"]
    assert out.scheduled_cached_reqs.num_computed_tokens == [30]
    assert out.scheduled_cached_reqs.new_block_ids == [None], "31 tokens still fit two blocks"

    sched.preempt("1")
    assert request.status == RequestStatus.PREEMPTED and request.num_computed_tokens == 0
    assert sched.kv_cache_manager.block_pool.get_num_free_blocks() == BLOCKS
    out, got = step(sched, [("1", 32)], [[9]])  # recompute prompt + both tokens
    assert out.preempted_req_ids == {"1"}
    if sched.use_v2_model_runner:
        (new,) = out.scheduled_new_reqs
        assert new.prefill_token_ids == [*PROMPT, 7, 8] and len(new.block_ids[0]) == 2
    else:
        assert out.scheduled_cached_reqs.resumed_req_ids == {"1"}
        assert [len(b[0]) for b in out.scheduled_cached_reqs.new_block_ids] == [2], "all its blocks, anew"
    assert got["1"].new_token_ids == [9] and request.num_computed_tokens == 32

    sched.finish_requests("1", RequestStatus.FINISHED_ABORTED)
    assert sched.kv_cache_manager.block_pool.get_num_free_blocks() == BLOCKS
    sched.add_request(new_request("2", [1, 2, 3], complete=True, params=params))
    out, _ = step(sched, [("2", 3)], [[4]])
    assert out.finished_req_ids == {"1"}, "the model runner is told to forget it"


def test_a_plan_the_cache_cannot_hold_is_refused(sched: PlanScheduler) -> None:
    params = vllm_sampling_params(SamplingParams(temperature=0.0, max_tokens=4), {})
    sched.add_request(new_request("3", list(range(BLOCKS * BS + 1)), complete=True, params=params))
    sched.plan(PlannedStep([("3", BLOCKS * BS + 1)], frozenset()))
    with pytest.raises(PlanRefused, match="does not have free"):
        sched.schedule()
