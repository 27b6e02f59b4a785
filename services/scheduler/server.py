"""The scheduler's gRPC surface: Submit, Attach, Cancel, Stats, and the workers' Connect stream.

State that must survive a restart (requests, tokens, each worker's KV ledger) is in Redis; on start
the scheduler reloads every unfinished request and queues it for recompute on the workers as they
(re)connect. Worker engines start empty on every connection, so nothing a worker cached before a
restart is trusted. If Redis goes away, `RedisGuard` pauses writes and writes the state back when it
returns (see recovery.py).

On SIGTERM the scheduler stops taking work, lets each worker finish and store the iteration in
flight, then ends the worker sessions and the token streams with UNAVAILABLE, so that
`server.stop(grace)` has only short calls left to wait for. Nothing accepted is lost: unfinished
requests stay in Redis, the next scheduler restores them, and clients resume with Attach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import redis
import redis.asyncio as aredis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ecoserve.core.cost_model import CostModel
from ecoserve.core.placement import make_placement
from ecoserve.core.policies import PolicyOptions, make_policy
from ecoserve.core.scheduler import WorkerScheduler
from ecoserve.ledger import RedisLedger
from ecoserve.proto import scheduler_pb2, worker_pb2
from services.scheduler.live import PREFIX_BLOCK, InvalidRequest, Limits, LiveRequest, from_submit
from services.scheduler.protocol import ProtocolError, check_hello, lenient, require
from services.scheduler.recovery import RedisGuard, redis_lost
from services.scheduler.session import WorkerSession
from services.scheduler.store import RequestStore
from services.shell import check_port, grpc_server, health_names, listen

log = logging.getLogger("ecoserve.scheduler")
SERVICE = "ecoserve.v1.Scheduler"
SHUTDOWN_GRACE_S = 2.0  # longest wait for work in flight at SIGTERM (an iteration, a unary call)
SHUTTING_DOWN = "the scheduler is shutting down"
# Engines that start a request on the KV of its cached prefix (plans may start it past position 0).
# The torch engine keeps no KV between requests, so its workers get no prefix caching.
PREFIX_CACHING_ENGINES = frozenset({"sim"})


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    redis_url: str
    policy: str = "ecoserve"
    cost_model: str = "llama-2-7b"
    gpu: str = "a100-40gb"
    limits: Limits = Limits()
    max_queue: int = 100_000  # unfinished requests; beyond it Submit answers RESOURCE_EXHAUSTED
    result_timeout_s: float = 60.0
    prefix: str = "ecoserve"
    router: str | None = None  # placement across workers (None: the policy's own, as in the simulator)
    # ecoserve's overload control. Live, a request is refused only if the operator asks for it
    # (`--overload shed`, the simulator's default): refusing by deadlines computed with a cost
    # model is an admission policy to choose, not a default to discover under load.
    overload: str | None = "yield"

    @property
    def placement(self) -> str:
        if self.router is not None:
            return self.router
        return "ecoserve" if self.policy.startswith("ecoserve") else "round-robin"


class SchedulerService:
    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.cost = CostModel.load(config.cost_model, config.gpu)
        make_policy(config.policy, self.cost)  # fail at start on an unknown policy
        # Timeouts: a Redis that hangs must fail writes (and start the repair), not stall them.
        self.redis = aredis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.sync_redis = redis.Redis.from_url(config.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.store = RequestStore(self.redis, config.limits, config.prefix)
        self.live: dict[int, LiveRequest] = {}  # unfinished
        self.guard = RedisGuard(self.redis, self.store, self.live)
        self.recent: OrderedDict[int, LiveRequest] = OrderedDict()  # finished, for late Attach
        self.pending: deque[LiveRequest] = deque()  # accepted, no worker yet
        self.sessions: dict[str, WorkerSession] = {}
        self.finished = 0
        self._worker_ids = 0
        self.stopping = asyncio.Event()  # set at shutdown: no new work, sessions and streams end
        # The simulator's placement objects: the same decisions across workers, live.
        self.placement = make_placement(config.placement, self.cost)

    async def restore(self) -> int:
        """Reload unfinished requests from Redis (scheduler restart); returns how many."""
        for req in await self.store.load_unfinished():
            self.live[req.id] = req
            self.pending.append(req)
        return len(self.pending)

    # --- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, req: LiveRequest) -> None:
        """Bind a request to a worker now (one worker, or a router that binds at arrival), or hold
        it for late binding: the first free worker takes it as it plans (`_assign`)."""
        sessions = list(self.sessions.values())
        if not sessions or (self.placement.late_binding and len(sessions) > 1):
            self.pending.append(req)
            for session in sessions:
                session.wake.set()
            return
        index = 0 if len(sessions) == 1 else self.placement.arrive(req.core, [s.sched for s in sessions], time.time())
        sessions[index or 0].add(req)

    def _assign(self, session: WorkerSession) -> None:
        """Before `session` plans: the requests the placement hands it from the cell's queue."""
        if not self.pending:
            return
        sessions = list(self.sessions.values())
        if len(sessions) == 1 or not self.placement.late_binding:
            while self.pending:
                self._dispatch(self.pending.popleft())
            return
        held = [r.core for r in self.pending]
        taken = self.placement.assign(held, [s.sched for s in sessions], sessions.index(session), time.time())
        self.pending = deque(self.live[core.id] for core in held)  # minus the taken, plus any moved back
        for core in taken:
            session.add(self.live[core.id])

    def _on_finished(self, req: LiveRequest) -> None:
        """The finish is in Redis: the request leaves the live set and its streams end."""
        req.closed = True
        self.live.pop(req.id, None)
        self.recent[req.id] = req
        while len(self.recent) > 10_000:
            self.recent.popitem(last=False)
        self.finished += 1
        req.notify()

    def _persist(self, session: WorkerSession, tokens: dict[int, list[int]], finished: list[LiveRequest]
                 ) -> Awaitable[None]:
        """One round trip per iteration: the ledger, the new tokens, the finishes.

        Staged now, with the ledger as it is; the caller awaits the result to send it, possibly
        after the next iteration has been planned.
        """
        pipe = self.redis.pipeline(transaction=True)
        session.ledger.stage(pipe)
        self.store.stage(pipe, tokens, [(req.id, req.finish_reason or "stop") for req in finished],
                         fence=(session.ledger.meta_key, session.ledger.epoch))
        return self._execute(session, pipe)

    async def _execute(self, session: WorkerSession, pipe: Any) -> None:
        try:
            async with self.guard.writing():
                await pipe.execute()
        except redis.RedisError:
            session.ledger.flush_failed()
            raise

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking work; end worker sessions once their iteration in flight is stored (at most
        `grace_s`), then end every token stream with UNAVAILABLE (clients resume with Attach)."""
        self.stopping.set()
        for session in self.sessions.values():
            session.wake.set()
        deadline = time.monotonic() + grace_s
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for req in list(self.live.values()):
            req.notify()

    # --- client RPCs -----------------------------------------------------------------------------

    async def Submit(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[scheduler_pb2.TokenEvent]:
        submit = await _check(context, request, scheduler_pb2.SubmitRequest)
        if self.stopping.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{SHUTTING_DOWN}; retry")
        if len(self.live) >= self.config.max_queue:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{len(self.live)} requests in flight; retry later")
        try:
            from_submit(0, submit, self.config.limits)  # validate before an id is spent
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not self.guard.ready.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Redis is unavailable; retry")
        try:
            async with self.guard.writing():
                req = from_submit(await self.store.next_id(), submit, self.config.limits)
                await self.store.accept(req)
                self.live[req.id] = req  # before the repair could run: it writes back self.live
        except redis.RedisError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable ({exc}); retry")
        self._dispatch(req)
        yield scheduler_pb2.TokenEvent(request_id=req.id)
        async for event in self._events(req, 0, context):
            yield event

    async def Attach(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[scheduler_pb2.TokenEvent]:
        attach = await _check(context, request, scheduler_pb2.AttachRequest)
        rid = attach.request_id
        req = self.live.get(rid) or self.recent.get(rid)
        if req is None:
            try:
                req = await self.store.load(rid)
            except redis.RedisError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis is unavailable ({exc}); retry")
        if req is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no request {rid}")
        if not req.closed and req.id not in self.live:  # accepted by another scheduler meanwhile
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"request {rid} is not served here; retry")
        async for event in self._events(req, attach.from_index, context):
            yield event

    async def _events(self, req: LiveRequest, start: int, context: grpc.aio.ServicerContext
                      ) -> AsyncIterator[scheduler_pb2.TokenEvent]:
        """Stored tokens from `start`, then the finish once it is stored; every token exactly once.

        At shutdown an unfinished stream ends with UNAVAILABLE after the tokens stored so far."""
        sent = start
        while True:
            changed = req.changed()
            while sent < req.stored:  # re-read after every yield: more may have been stored meanwhile
                yield scheduler_pb2.TokenEvent(request_id=req.id, has_token=True, token_id=req.output[sent],
                                               index=sent)
                sent += 1
            if req.closed:
                yield scheduler_pb2.TokenEvent(request_id=req.id, index=sent, finished=True,
                                               finish_reason=req.finish_reason or "")
                return
            if self.stopping.is_set():
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"{SHUTTING_DOWN}; Attach to request {req.id} from token {sent}")
            await changed.wait()

    async def Cancel(self, request: Any, context: grpc.aio.ServicerContext) -> scheduler_pb2.CancelResponse:
        rid = (await _check(context, request, scheduler_pb2.CancelRequest)).request_id
        req = self.live.get(rid)
        if req is None or req.finished:  # finished: its last iteration is being stored
            return scheduler_pb2.CancelResponse(cancelled=False)
        if req in self.pending:
            self.pending.remove(req)
        else:
            for session in self.sessions.values():
                if session.abort(rid, "abort"):
                    break
        req.finish_reason = "abort"
        pipe = self.redis.pipeline(transaction=True)
        self.store.stage(pipe, {}, [(rid, "abort")])
        try:
            async with self.guard.writing():
                await pipe.execute()
        except redis.RedisError as exc:  # the repair writes the live set without it
            log.warning("cancel of request %d not stored: %s", rid, exc)
        self._on_finished(req)
        return scheduler_pb2.CancelResponse(cancelled=True)

    async def Stats(self, request: Any, context: grpc.aio.ServicerContext) -> scheduler_pb2.StatsResponse:
        await _check(context, request, scheduler_pb2.StatsRequest)
        workers = [
            scheduler_pb2.WorkerStats(
                name=s.hello.name, engine=s.hello.engine, model=s.hello.model,
                capacity_blocks=s.ledger.capacity, used_blocks=s.ledger.used,
                running=len(s.sched.running), waiting=len(s.sched.waiting) + len(s.sched.gt_queue),
                iterations=s.iteration, preemptions=s.sched.stats.preemptions, timings=s.timer.to_proto(),
                cached_blocks=len(s.ledger.prefix), prefix_query_blocks=s.ledger.prefix.queries,
                prefix_hit_blocks=s.ledger.prefix.hits,
            )
            for s in self.sessions.values()
        ]
        return scheduler_pb2.StatsResponse(workers=workers, pending=len(self.pending), unfinished=len(self.live),
                                           finished=self.finished, policy=self.config.policy)

    # --- workers ---------------------------------------------------------------------------------

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        session: WorkerSession | None = None
        try:
            session = await self._open(context)
            await session.run(context, self._on_finished)
            if self.stopping.is_set():
                raise ProtocolError(grpc.StatusCode.UNAVAILABLE, f"{SHUTTING_DOWN}; reconnect later")
        except ProtocolError as exc:
            log.warning("worker %s: %s", session.hello.name if session else "?", exc.message)
            await context.abort(exc.code, exc.message)
        except ConnectionError as exc:
            log.warning("worker %s left: %s", session.hello.name if session else "?", exc)
        except redis.RedisError as exc:
            log.warning("worker %s: session ends on a Redis error: %s", session.hello.name if session else "?", exc)
            if session is None and redis_lost(exc):  # a session's own writes report through the guard
                self.guard.failed(exc)
            code = grpc.StatusCode.UNAVAILABLE if redis_lost(exc) else grpc.StatusCode.ABORTED
            await context.abort(code, f"Redis: {exc}")
        finally:
            if session is not None:
                self._close(session)

    async def _open(self, context: grpc.aio.ServicerContext) -> WorkerSession:
        msg = await context.read()
        if msg is grpc.aio.EOF:
            raise ConnectionError("stream closed before hello")
        msg = require(msg, worker_pb2.WorkerMessage)
        if msg.WhichOneof("kind") != "hello":
            raise ProtocolError(grpc.StatusCode.FAILED_PRECONDITION,
                                f"the first message must be hello, got {msg.WhichOneof('kind')}")
        hello = msg.hello
        check_hello(hello)
        if hello.name in self.sessions:
            raise ProtocolError(grpc.StatusCode.ALREADY_EXISTS, f"worker {hello.name!r} is already connected")
        if not self.guard.ready.is_set():
            raise ProtocolError(grpc.StatusCode.UNAVAILABLE, "Redis is unavailable; reconnect later")
        if self.stopping.is_set():
            raise ProtocolError(grpc.StatusCode.UNAVAILABLE, f"{SHUTTING_DOWN}; reconnect later")
        self._worker_ids += 1
        ledger = RedisLedger.create(self.sync_redis, hello.name, hello.capacity_blocks, hello.block_size,
                                    self.config.prefix)
        policy = make_policy(self.config.policy, self.cost, PolicyOptions(overload=self.config.overload))
        # Prompts are hashed in PREFIX_BLOCK-token blocks: only an engine that reuses KV in blocks
        # of that size can share them.
        policy.prefix_caching &= hello.engine in PREFIX_CACHING_ENGINES and hello.block_size == PREFIX_BLOCK
        session = WorkerSession(self._worker_ids, hello, WorkerScheduler(policy, ledger, self._worker_ids), ledger,
                                self.live, self._persist, self.config.result_timeout_s, self.stopping, self._assign)
        self.sessions[hello.name] = session
        await context.write(worker_pb2.SchedulerMessage(welcome=worker_pb2.Welcome(worker_id=session.worker_id)))
        log.info("worker %s connected: %d blocks of %d tokens, %s/%s", hello.name, hello.capacity_blocks,
                 hello.block_size, hello.engine, hello.model)
        if not self.placement.late_binding or len(self.sessions) == 1:
            while self.pending:
                self._dispatch(self.pending.popleft())
        else:
            for other in self.sessions.values():
                other.wake.set()  # a new worker to place held requests on
        return session

    def _close(self, session: WorkerSession) -> None:
        """A worker left: its unfinished requests are recomputed on the others."""
        if self.sessions.get(session.hello.name) is session:
            del self.sessions[session.hello.name]
        orphans = [r for r in session.orphans() if r.id in self.live]
        try:
            session.ledger.delete()
        except redis.RedisError as exc:  # gone with Redis, or replaced when the worker says hello again
            log.warning("ledger of worker %s not deleted: %s", session.hello.name, exc)
        for req in orphans:
            self._dispatch(req)
        if orphans:
            log.warning("worker %s lost: %d requests re-queued", session.hello.name, len(orphans))


async def _check(context: grpc.aio.ServicerContext, request: Any, cls: Any) -> Any:
    try:
        return require(request, cls)
    except ProtocolError as exc:
        await context.abort(exc.code, exc.message)


def _handlers(svc: SchedulerService) -> grpc.GenericRpcHandler:
    """The Scheduler service with parsers that turn bad bytes into INVALID_ARGUMENT."""
    s, w = scheduler_pb2, worker_pb2
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Submit": grpc.unary_stream_rpc_method_handler(svc.Submit, lenient(s.SubmitRequest), s.TokenEvent.SerializeToString),
        "Attach": grpc.unary_stream_rpc_method_handler(svc.Attach, lenient(s.AttachRequest), s.TokenEvent.SerializeToString),
        "Cancel": grpc.unary_unary_rpc_method_handler(svc.Cancel, lenient(s.CancelRequest), s.CancelResponse.SerializeToString),
        "Stats": grpc.unary_unary_rpc_method_handler(svc.Stats, lenient(s.StatsRequest), s.StatsResponse.SerializeToString),
        "Connect": grpc.stream_stream_rpc_method_handler(svc.Connect, lenient(w.WorkerMessage),
                                                         w.SchedulerMessage.SerializeToString),
    })


async def serve(config: SchedulerConfig, address: str, stop: asyncio.Event) -> None:
    """Run until `stop` is set; the health service reports SERVING once requests are restored."""
    check_port(address, "scheduler gRPC")  # a taken port fails the start at once
    svc = SchedulerService(config)
    server = grpc_server([("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000)])
    server.add_generic_rpc_handlers((_handlers(svc),))
    health_svc = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_svc, server)
    try:
        await listen(server, address, "scheduler gRPC")
        while True:  # before serving: an Attach must find restored requests live
            try:
                restored = await svc.restore()
                break
            except redis.ConnectionError as exc:
                log.warning("waiting for Redis at %s: %s", config.redis_url, exc)
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                    await server.stop(None)
                    return  # stopped before it ever served
                except TimeoutError:
                    pass
        await server.start()
        for name in health_names(SERVICE):
            await health_svc.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("scheduler on %s (policy %s): %d unfinished requests restored", address, config.policy, restored)
        await stop.wait()
        for name in health_names(SERVICE):
            await health_svc.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await svc.shutdown(SHUTDOWN_GRACE_S)
        await server.stop(grace=SHUTDOWN_GRACE_S)
    finally:
        await svc.redis.aclose()
        svc.sync_redis.close()
