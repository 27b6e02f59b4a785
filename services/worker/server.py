"""A worker's session with its scheduler: dial in, say hello, run one BatchPlan per message.

The worker is a client of the scheduler's Connect stream. Every (re)connection starts from an empty
engine, so after a scheduler restart or a broken stream nothing stale is trusted: the scheduler
recomputes what this worker held.

It runs on asyncio (grpc.aio) with the engine's step called inline: a worker does one thing at a
time, and a plan that arrives is executed on the thread that received it, with no hand-off to
another thread on the way in or out (each hand-off is a wake-up the plan's round trip pays for).

stop() (SIGTERM) ends the session at once while the worker waits for a plan; a plan being executed
is finished and its result sent first, so the scheduler stores that iteration before the worker goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc

from ecoserve.engine import Engine, SamplingParams, StepItem
from ecoserve.proto import common_pb2, scheduler_pb2_grpc, worker_pb2

log = logging.getLogger("ecoserve.worker")
STOP_TIMEOUT_S = 5.0  # longest a stop waits for the result in flight to be sent


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    name: str
    engine: str
    model: str


def sampling_params(p: common_pb2.SamplingParams) -> SamplingParams:
    return SamplingParams(temperature=p.temperature, top_p=p.top_p or 1.0, top_k=p.top_k,
                          seed=p.seed if p.HasField("seed") else None, max_tokens=p.max_tokens,
                          stop_token_ids=tuple(p.stop_token_ids), ignore_eos=p.ignore_eos)


class Worker:
    def __init__(self, scheduler: str, engine: Engine, identity: WorkerIdentity) -> None:
        self.scheduler = scheduler
        self.engine = engine
        self.identity = identity
        self.params: dict[int, SamplingParams] = {}
        self.stopping = asyncio.Event()
        self._busy = False  # a plan is being executed or its result sent

    async def run(self, max_backoff_s: float = 2.0) -> None:
        """Serve sessions until stop(); reconnect with backoff when a session ends."""
        backoff = 0.05
        while not self.stopping.is_set():
            session = asyncio.create_task(self._session())
            stop = asyncio.create_task(self.stopping.wait())
            await asyncio.wait((session, stop), return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if self.stopping.is_set():
                if not self._busy:
                    session.cancel()  # waiting for a plan: nothing is in flight
                with contextlib.suppress(asyncio.CancelledError, TimeoutError, grpc.RpcError, ValueError,
                                         RuntimeError):
                    await asyncio.wait_for(session, STOP_TIMEOUT_S)
                break
            try:
                session.result()
                backoff = 0.05
            except grpc.RpcError as exc:
                log.warning("session with %s ended: %s %s", self.scheduler, exc.code(), exc.details())
            except (ValueError, RuntimeError) as exc:  # the engine refused a plan: start over clean
                log.error("plan failed, reconnecting with an empty engine: %s", exc)
            self._reset_engine()
            try:
                await asyncio.wait_for(self.stopping.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(max_backoff_s, backoff * 2)

    def stop(self) -> None:
        self.stopping.set()

    async def _session(self) -> None:
        ident = self.identity
        async with grpc.aio.insecure_channel(self.scheduler) as channel:
            call = scheduler_pb2_grpc.SchedulerStub(channel).Connect(wait_for_ready=True)
            await call.write(worker_pb2.WorkerMessage(hello=worker_pb2.Hello(
                name=ident.name, capacity_blocks=self.engine.num_blocks, block_size=self.engine.block_size,
                model=ident.model, engine=ident.engine)))
            while (msg := await call.read()) is not grpc.aio.EOF:
                if msg.WhichOneof("kind") == "welcome":
                    log.info("connected to %s as worker %d", self.scheduler, msg.welcome.worker_id)
                    continue
                self._busy = True
                try:
                    await call.write(worker_pb2.WorkerMessage(result=self._execute(msg.plan)))
                finally:
                    self._busy = False
                if self.stopping.is_set():
                    await call.done_writing()  # the scheduler stores this result, then ends the session
                    with contextlib.suppress(grpc.RpcError):
                        await call
                    return
            await call  # raises the status the scheduler ended the stream with

    def _execute(self, plan: worker_pb2.BatchPlan) -> worker_pb2.IterationResult:
        for rid in plan.release:
            self.engine.release(rid)
            self.params.pop(rid, None)
        for rid in plan.reset:
            self.engine.reset(rid)
        items = []
        for it in plan.items:
            if it.HasField("params"):
                self.params[it.request_id] = sampling_params(it.params)
            if it.request_id not in self.params:
                raise ValueError(f"request {it.request_id}: first item came without sampling params")
            items.append(StepItem(it.request_id, list(it.token_ids), it.start_pos, it.sample, self.params[it.request_id]))
        outputs, timing = self.engine.step(items)
        result = worker_pb2.IterationResult(iteration=plan.iteration, forward_s=timing.forward_s,
                                            sample_s=timing.sample_s)
        for out in outputs:
            result.outputs.add(request_id=out.request_id, has_token=out.token_id is not None,
                               token_id=out.token_id or 0, finished=out.finished, finish_reason=out.finish_reason or "")
        return result

    def _reset_engine(self) -> None:
        for rid in list(self.params):
            self.engine.release(rid)
        self.params.clear()
