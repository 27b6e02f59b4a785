"""One connected worker: its core WorkerScheduler, and the iteration protocol on its stream.

Per iteration: the policy plans (WorkerScheduler.schedule), one BatchPlan goes down, one
IterationResult comes back and is checked against the plan, WorkerScheduler.update applies it, and
one Redis pipeline mirrors the ledger and stores the new tokens and finishes, while the worker
already computes the next iteration; only once it is stored are the tokens forwarded to the
submitters.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc

from ecoserve.core.plan import BatchPlan
from ecoserve.core.request import Phase
from ecoserve.core.scheduler import WorkerScheduler
from ecoserve.ledger import RedisLedger
from ecoserve.proto import worker_pb2
from services.scheduler.live import LiveRequest
from services.scheduler.protocol import ProtocolError, require
from services.scheduler.timings import IterationTimer

# The finish reason of a request overload control refused; the gateway answers it with 503 and
# Retry-After, as a request it could not take.
REFUSED = "refused: it could no longer meet its TTFT deadline on this cell (overload); retry"


def failed(out: worker_pb2.ItemOutput) -> bool:
    """The engine could not compute this item's request (its own fault: a token outside the model's
    vocabulary, more tokens than its context): it reports no token and an "error: ..." finish."""
    return out.finished and not out.has_token and out.finish_reason.startswith("error")


# Stages an iteration's Redis pipeline when called (the ledger as it is then); awaiting sends it.
Persist = Callable[["WorkerSession", dict[int, list[int]], list[LiveRequest]], Awaitable[None]]


class WorkerSession:
    def __init__(self, worker_id: int, hello: worker_pb2.Hello, sched: WorkerScheduler, ledger: RedisLedger,
                 live: dict[int, LiveRequest], persist: Persist, result_timeout_s: float,
                 stopping: asyncio.Event | None = None,
                 before_plan: Callable[[WorkerSession], None] = lambda session: None) -> None:
        self.worker_id = worker_id
        self.hello = hello
        self.sched = sched
        self.ledger = ledger
        self.live = live
        self.persist = persist
        self.result_timeout_s = result_timeout_s
        self.iteration = 0
        self.releases: set[int] = set()  # the engine must forget these before its next step
        self.introduced: set[int] = set()  # requests whose params the worker holds
        self.wake = asyncio.Event()
        self.timer = IterationTimer()
        self.unstored: list[LiveRequest] = []  # finishes staged for Redis and not stored yet
        self.stopping = stopping or asyncio.Event()  # the scheduler shuts down: end after this iteration
        self.before_plan = before_plan  # the cell's placement hands over requests (late binding)

    # --- called by the server --------------------------------------------------------------------

    def add(self, req: LiveRequest) -> None:
        self.sched.add_request(req.core)
        self.wake.set()

    def abort(self, rid: int, reason: str) -> bool:
        if self.sched.abort(rid, time.time(), reason) is None:
            return False
        self._forget(rid)
        self.wake.set()
        return True

    def orphans(self) -> list[LiveRequest]:
        """Unfinished requests of a worker that is gone, ready to be recomputed elsewhere.

        Requests whose finish never reached Redis count as unfinished: they run again from their
        stored tokens.
        """
        reqs = [self.live[rid] for rid in self.sched.requests] + [r for r in self.unstored if not r.closed]
        for req in reqs:
            req.requeue()
        return reqs

    # --- the loop --------------------------------------------------------------------------------

    async def run(self, context: Any, on_finished: Callable[[LiveRequest], None]) -> None:
        """Plan, send, read, apply; an iteration's Redis write and token delivery overlap the next one.

        The next plan needs only the in-process state, so iteration k+1 goes to the worker before
        iteration k's pipeline is sent, and the Redis round trip hides behind the worker's compute.
        Clients still see a token only once it is in Redis (`_land`); a worker that computed on a
        token Redis never got is dropped with the session, and that token is generated again.
        Returns once `stopping` is set and the iteration in flight is stored.
        """
        clock = time.perf_counter
        landing: asyncio.Task[None] | None = None
        try:
            while not self.stopping.is_set():
                started = clock()
                self.before_plan(self)
                plan = self.sched.schedule(time.time())
                failed = self._unschedulable(plan) + self._refused(plan)
                idle = not failed and not plan.items and not plan.preempted and not self.releases
                if landing is not None and (failed or idle):
                    await landing
                    landing = None
                if failed:
                    await self._land({}, failed, on_finished)
                    if not plan.items and not plan.preempted:
                        continue
                if idle:
                    self.wake.clear()
                    if not self.stopping.is_set():
                        await self.wake.wait()  # a new request, a cancel or the shutdown
                    continue
                self.iteration += 1
                message = self._plan_message(plan)
                sent = clock()
                await context.write(worker_pb2.SchedulerMessage(plan=message))
                result = await self._read_result(context, plan)
                received = clock()
                if landing is not None:
                    await landing  # Redis writes stay in iteration order
                    landing = None
                landed = clock()
                finished, tokens = self._apply(plan, result)
                landing = asyncio.create_task(self._land(tokens, finished, on_finished))
                compute = result.forward_s + result.sample_s
                done = clock()
                self.timer.iteration(wall=done - started, compute=compute, policy=sent - started + done - landed,
                                     round_trip=received - sent - compute)
        finally:
            if landing is not None:
                await landing

    def _land(self, tokens: dict[int, list[int]], finished: list[LiveRequest],
              on_finished: Callable[[LiveRequest], None]) -> Coroutine[Any, Any, None]:
        """Stage an iteration's Redis pipeline now (the ledger as it is); the coroutine sends it."""
        self.unstored = finished
        grown = [(self.live[rid], len(toks)) for rid, toks in tokens.items()]  # a cancel may drop them from live
        return self._deliver(self.persist(self, tokens, finished), grown, finished, on_finished)

    async def _deliver(self, flush: Awaitable[None], grown: list[tuple[LiveRequest, int]],
                       finished: list[LiveRequest], on_finished: Callable[[LiveRequest], None]) -> None:
        """Send an iteration's Redis pipeline; once it is stored, deliver its tokens and finishes."""
        started = time.perf_counter()
        await flush
        self.unstored = []
        self.timer.flush(time.perf_counter() - started)
        for req, n in grown:
            req.stored += n
            req.notify()
        for req in finished:
            on_finished(req)

    def _plan_message(self, plan: BatchPlan) -> worker_pb2.BatchPlan:
        msg = worker_pb2.BatchPlan(iteration=self.iteration, release=sorted(self.releases),
                                   reset=[r.id for r in plan.preempted])
        self.releases.clear()
        for core, n in plan.items:
            req = self.live[core.id]
            item = msg.items.add(request_id=core.id, token_ids=req.token_slice(core.num_computed, n),
                                 start_pos=core.num_computed, sample=core.num_computed + n >= core.num_tokens)
            if core.id not in self.introduced:
                item.params.CopyFrom(req.engine_params())
                self.introduced.add(core.id)
        return msg

    async def _read_result(self, context: Any, plan: BatchPlan) -> worker_pb2.IterationResult:
        try:
            msg = await asyncio.wait_for(context.read(), self.result_timeout_s)
        except TimeoutError:
            raise ProtocolError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"no result for iteration {self.iteration} within {self.result_timeout_s}s") from None
        if msg is grpc.aio.EOF:
            raise ConnectionError("worker closed its stream")
        msg = require(msg, worker_pb2.WorkerMessage)
        if msg.WhichOneof("kind") != "result":
            raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                f"expected the result of iteration {self.iteration}, got {msg.WhichOneof('kind')}")
        result = msg.result
        if result.iteration != self.iteration:
            raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                f"result for iteration {result.iteration}, expected {self.iteration}")
        if len(result.outputs) != len(plan.items):
            raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"iteration {self.iteration}: {len(result.outputs)} outputs for {len(plan.items)} items")
        for out, (core, n) in zip(result.outputs, plan.items, strict=True):
            sampled = core.num_computed + n >= core.num_tokens
            if out.request_id != core.id or out.has_token != (sampled and not failed(out)) or out.token_id < 0:
                raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"iteration {self.iteration}: output for request {out.request_id} does not "
                                    f"match the plan (request {core.id}, sample={sampled})")
        return result

    def _apply(self, plan: BatchPlan, result: worker_pb2.IterationResult
               ) -> tuple[list[LiveRequest], dict[int, list[int]]]:
        """WorkerScheduler.update with the sampled tokens; returns (finished, new tokens by id)."""
        tokens: dict[int, list[int]] = {}
        engine_finished: dict[int, str] = {}
        errors = []
        for out in result.outputs:
            req = self.live.get(out.request_id)
            if req is None or req.core.phase is Phase.FINISHED:
                continue  # cancelled while the iteration ran
            if failed(out):  # the engine could not compute this request: it ends, the rest goes on
                self.abort(out.request_id, "error")
                req.finish_reason = out.finish_reason
                errors.append(req)
                continue
            if not out.has_token:
                continue
            req.output.append(out.token_id)
            tokens[out.request_id] = [out.token_id]
            if out.finished:
                engine_finished[out.request_id] = out.finish_reason or "stop"
        done = self.sched.update(plan, time.time(), frozenset(engine_finished))
        finished = errors
        for core in done:
            req = self.live[core.id]
            req.finish_reason = engine_finished.get(core.id, core.finish_reason)
            self._forget(core.id)
            finished.append(req)
        return finished, tokens

    def _forget(self, rid: int) -> None:
        if rid in self.introduced:
            self.introduced.discard(rid)
            self.releases.add(rid)

    def _refused(self, plan: BatchPlan) -> list[LiveRequest]:
        """Requests the policy's overload control turned away: they end with a retryable error."""
        refused = []
        for core in plan.refused:
            req = self.live[core.id]
            req.finish_reason = REFUSED
            self._forget(core.id)
            refused.append(req)
        return refused

    def _unschedulable(self, plan: BatchPlan) -> list[LiveRequest]:
        """With nothing running, planned or held, the head of the queue can never fit here: fail it."""
        sched = self.sched
        if plan.items or sched.running or sched.gt_queue or not sched.waiting or self.ledger.used:
            return []
        req = self.live[sched.waiting[0].id]
        self.abort(req.id, "error")
        req.finish_reason = f"error: needs more KV than worker {self.hello.name} has ({self.ledger.capacity} blocks)"
        return [req]
