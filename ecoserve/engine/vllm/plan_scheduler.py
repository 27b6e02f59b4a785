"""A vLLM V1 scheduler class that decides nothing: each step executes the batch plan it is given.

`EngineCore.step()` calls `schedule()`, runs the model on the `SchedulerOutput` and hands the
model's output to `update_from_output()`. Here `schedule()` turns EcoServe's plan (which requests,
how many tokens each, prefill chunks included) into that `SchedulerOutput`, with block ids from
vLLM's own KV cache manager, which stays the physical allocator while EcoServe's ledger is the
logical authority: a plan the cache cannot hold means the two disagree, and is refused. Everything
else is vLLM's: `update_from_output` appends the sampled tokens and applies the stop rules, and
`finish_requests` / `_preempt_request` free blocks as in vLLM.

The scheduler interface is not public (vllm/v1/core/sched/interface.py) and differs between
releases; what this relies on is tested against each pinned one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vllm.v1.core.sched.output import NewRequestData, SchedulerOutput
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.request import Request, RequestStatus


class PlanRefused(RuntimeError):
    """vLLM's cache cannot hold what the plan asks for: EcoServe's ledger and vLLM disagree."""


@dataclass(frozen=True, slots=True)
class PlannedStep:
    items: list[tuple[str, int]]  # (request id, tokens to compute), in the plan's order
    resend: frozenset[str]  # requests whose sequence changed: the model runner gets them whole again


class PlanScheduler(Scheduler):
    _planned: PlannedStep | None = None

    def plan(self, step: PlannedStep) -> None:
        """The step the next `schedule()` executes."""
        self._planned = step

    def preempt(self, request_id: str) -> None:
        """Free a running request's blocks and reset its progress; it recomputes when planned again."""
        request = self.requests.get(request_id)
        if request is None or request.status != RequestStatus.RUNNING:
            return  # never scheduled, or already preempted: nothing is held
        self.running.remove(request)
        self._preempt_request(request, time.monotonic())

    def schedule(self, throttle_prefills: bool = False) -> SchedulerOutput:
        step, self._planned = self._planned, None
        if step is None:
            raise RuntimeError("PlanScheduler.schedule() without a plan: vLLM does not decide here")
        new: list[Request] = []
        resumed: list[Request] = []
        running: list[Request] = []
        new_blocks = {}
        for request_id, n in step.items:
            request = self.requests[request_id]
            blocks = self.kv_cache_manager.allocate_slots(request, n, has_scheduled_reqs=False)
            if blocks is None:
                raise PlanRefused(
                    f"request {request_id}: {n} more tokens on {request.num_computed_tokens} need blocks that "
                    f"vLLM's cache does not have free ({self.kv_cache_manager.block_pool.get_num_free_blocks()} free)")
            if request.status in (RequestStatus.WAITING, RequestStatus.PREEMPTED):
                self.waiting.remove_request(request)
                self.running.append(request)
            if request.status == RequestStatus.WAITING or request_id in step.resend:
                new.append(request)
                new_blocks[request_id] = self.kv_cache_manager.get_blocks(request_id)
            elif request.status == RequestStatus.PREEMPTED:
                resumed.append(request)
                new_blocks[request_id] = self.kv_cache_manager.get_blocks(request_id)
            else:
                running.append(request)
                new_blocks[request_id] = blocks
            request.status = RequestStatus.RUNNING
        num_scheduled = dict(step.items)
        if self.use_v2_model_runner:  # it takes a resumed request whole, as a new one (vLLM does the same)
            new += resumed
            resumed = []
        new_data = [NewRequestData.from_request(
            r, new_blocks[r.request_id].get_block_ids(),
            list(r.all_token_ids) if self.use_v2_model_runner else None) for r in new]
        cached = self._make_cached_request_data(running, resumed, num_scheduled, {}, new_blocks)
        if not self.use_v2_model_runner:
            self.prev_step_scheduled_req_ids.clear()
            self.prev_step_scheduled_req_ids.update(num_scheduled)
        output = SchedulerOutput(
            scheduled_new_reqs=new_data,
            scheduled_cached_reqs=cached,
            num_scheduled_tokens=num_scheduled,
            total_num_scheduled_tokens=sum(num_scheduled.values()),
            scheduled_spec_decode_tokens={},
            scheduled_encoder_inputs={},
            finished_req_ids=self.finished_req_ids,
            free_encoder_mm_hashes=self.encoder_cache_manager.get_freed_mm_hashes(),
            preempted_req_ids=self.reset_preempted_req_ids,
            new_block_ids_to_zero=self._get_new_block_ids_to_zero(),
        )
        self._update_after_schedule(output)  # advances progress; clears the finished and preempted ids
        return output
