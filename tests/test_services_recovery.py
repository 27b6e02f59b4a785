"""Real processes: the scheduler crashes and comes back; workers send garbage and out-of-order messages."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import redis
from service_cell import SIM, make_cell  # noqa: F401 (fixture)

from ecoserve.client import EcoServeClient
from ecoserve.launch import LocalCell, WorkerArgs
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port
from ecoserve.proto import scheduler_pb2, worker_pb2
from test_services_cluster import _expect_sim_tokens, _run_all


def test_scheduler_restart_recovers_from_redis_and_loses_nothing(make_cell) -> None:
    slow = WorkerArgs(engine="sim", model="llama-2-7b", extra=("--time-scale", "3"))
    cell = make_cell({"w0": slow, "w1": slow})
    jobs = [(list(range(20 + i)), 50) for i in range(24)]
    restarted = threading.Event()

    def crash_and_restart() -> None:
        with EcoServeClient(cell.address) as client:
            deadline = time.monotonic() + 30
            while sum(w.iterations for w in client.stats().workers) < 15:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert client.stats().unfinished > 0
        cell.kill("scheduler")
        cell.start_scheduler()
        restarted.set()

    crasher = threading.Thread(target=crash_and_restart)
    crasher.start()
    done = _run_all(cell.address, jobs)
    crasher.join()
    assert restarted.is_set()
    for (prompt, max_tokens), result in zip(jobs, done, strict=True):
        _expect_sim_tokens(result, len(prompt), max_tokens)
    with EcoServeClient(cell.address) as client:
        stats = client.stats()
        assert stats.unfinished == 0 and len(stats.workers) == 2
        # A request that finished before the crash is still there to replay.
        replay = list(client.stub.Attach(scheduler_pb2.AttachRequest(request_id=done[0].request_id)))
        assert [e.token_id for e in replay if e.has_token] == done[0].tokens


def test_redis_restart_without_its_data_loses_nothing(tmp_path) -> None:
    """Redis dies mid-run and comes back empty: sessions end, the scheduler writes its requests back,
    workers reconnect, every request finishes with the right tokens, and Redis agrees with them."""
    server = EmbeddedRedis.start()
    cell = LocalCell(server.url, free_port(), log_dir=str(tmp_path))
    slow = WorkerArgs(engine="sim", model="llama-2-7b", extra=("--time-scale", "3"))
    late: list = []
    try:
        cell.start_scheduler()
        for name in ("w0", "w1"):
            cell.start_worker(name, slow)
        cell.wait_ready(2)
        jobs = [(list(range(20 + i)), 50) for i in range(16)]

        def restart_redis() -> None:
            nonlocal server
            with EcoServeClient(cell.address) as client:
                deadline = time.monotonic() + 30
                while sum(w.iterations for w in client.stats().workers) < 15:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            port = server.port
            server.stop()
            # Submitted while Redis is down: refused with UNAVAILABLE until it is back, and retried.
            late.append(threading.Thread(target=lambda: late.append(_run_all(cell.address, [([9] * 12, 20)]))))
            late[0].start()
            time.sleep(1.0)
            server = EmbeddedRedis.start(port=port)

        restarter = threading.Thread(target=restart_redis)
        restarter.start()
        done = _run_all(cell.address, jobs)
        restarter.join()
        late[0].join(60)
        assert len(late) == 2, "the submission made during the outage finished"
        done += late[1]
        jobs += [([9] * 12, 20)]
        for (prompt, max_tokens), result in zip(jobs, done, strict=True):
            _expect_sim_tokens(result, len(prompt), max_tokens)
        cell.wait_ready(2)  # both workers are back
        with EcoServeClient(cell.address) as client:
            assert client.stats().unfinished == 0
        stored = redis.Redis.from_url(server.url)
        for result in done:  # what Redis holds is what the clients got
            assert [int(t) for t in stored.lrange(f"ecoserve:out:{result.request_id}", 0, -1)] == result.tokens
            assert stored.hget(f"ecoserve:req:{result.request_id}", "finish_reason") == b"length"
        assert stored.smembers("ecoserve:live") == set()
        stored.close()
    finally:
        cell.stop()
        server.stop()


def _raw_connect(address: str):
    channel = grpc.insecure_channel(address)
    return channel, channel.stream_stream("/ecoserve.v1.Scheduler/Connect", request_serializer=None,
                                          response_deserializer=worker_pb2.SchedulerMessage.FromString)


def _status_of(address: str, messages: list[bytes]) -> tuple[grpc.StatusCode, str]:
    channel, connect = _raw_connect(address)
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            for _ in connect(iter(messages), timeout=10):
                pass
    return err.value.code(), err.value.details()


def _msg(**kwargs) -> bytes:
    return worker_pb2.WorkerMessage(**kwargs).SerializeToString()


HELLO = worker_pb2.Hello(name="fake", capacity_blocks=100, block_size=16, model="m", engine="sim")


def test_bad_worker_messages_get_clear_statuses_and_the_service_keeps_serving(make_cell) -> None:
    cell = make_cell({})
    addr = cell.address
    with EcoServeClient(addr) as client:
        # The only worker is a fake one: it gets the plan and answers for the wrong iteration.
        waiter = threading.Thread(target=lambda: client.generate([1, 2, 3], 4))
        assert _fake_worker_answers_wrong_iteration(addr, waiter) == grpc.StatusCode.FAILED_PRECONDITION
        cell.start_worker("w0", SIM)
        waiter.join(30)
        assert not waiter.is_alive(), "the fake worker's request was re-queued and finished on the real one"

    code, details = _status_of(addr, [b"\xff\xff\xff\xff garbage"])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed ecoserve.v1.WorkerMessage" in details
    code, details = _status_of(addr, [_msg(result=worker_pb2.IterationResult(iteration=1))])
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "first message must be hello" in details
    for bad, complaint in [
        (dict(name="", capacity_blocks=9, block_size=16), "name ''"),
        (dict(name="w}:acct", capacity_blocks=9, block_size=16), "name 'w}:acct'"),
        (dict(name="x" * 65, capacity_blocks=9, block_size=16), "1-64"),
        (dict(name="x", capacity_blocks=0, block_size=16), "capacity_blocks must be > 0"),
        (dict(name="x", capacity_blocks=9, block_size=0), "block_size must be in [1, 1024], got 0"),
        (dict(name="x", capacity_blocks=9, block_size=4096), "got 4096"),
        (dict(name="x", capacity_blocks=9, block_size=16, model="m" * 300), "model is longer"),
        (dict(name="", capacity_blocks=0, block_size=16), "digit; capacity_blocks"),  # every problem at once
    ]:
        code, details = _status_of(addr, [_msg(hello=worker_pb2.Hello(**bad))])
        assert code == grpc.StatusCode.INVALID_ARGUMENT and complaint in details, (bad, details)
    code, details = _status_of(addr, [_msg(hello=worker_pb2.Hello(name="w0", capacity_blocks=9, block_size=16))])
    assert code == grpc.StatusCode.ALREADY_EXISTS

    with EcoServeClient(addr) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.generate([], 5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            client.generate([1, 2], 5, temperature=-1.0)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in err.value.details()
        garbage = client.channel.unary_unary("/ecoserve.v1.Scheduler/Cancel", request_serializer=None)
        with pytest.raises(grpc.RpcError) as err:
            garbage(b"\x08\xff")  # a truncated varint
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # Still serving: a real request finishes on the real worker.
        done = client.generate([5, 6, 7], 9)
        _expect_sim_tokens(done, 3, 9)
        stats = client.stats()
        assert [w.name for w in stats.workers] == ["w0"] and stats.unfinished == 0


def _fake_worker_answers_wrong_iteration(addr: str, submitter: threading.Thread) -> grpc.StatusCode:
    channel, connect = _raw_connect(addr)
    answer: list[bytes] = []
    ready = threading.Event()

    def requests():
        yield _msg(hello=HELLO)
        ready.wait(20)
        yield answer[0]

    with channel:
        stream = connect(requests(), timeout=20)
        assert next(stream).WhichOneof("kind") == "welcome"
        submitter.start()
        plan = next(stream).plan
        assert len(plan.items) == 1 and plan.items[0].HasField("params")
        answer.append(_msg(result=worker_pb2.IterationResult(iteration=plan.iteration + 5)))
        ready.set()
        with pytest.raises(grpc.RpcError) as err:
            next(stream)
        assert "expected" in err.value.details()
        return err.value.code()
