"""The predictor service as real processes: batched Predict, health, metrics, bad input; retraining
from the Redis completion log on a schedule and on demand; replicas adopting the new model; live error."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
import redis.asyncio as aredis

from ecoserve.completion_log import CompletionLog, LoggedCompletion
from ecoserve.launch import LocalCell
from ecoserve.ledger import EmbeddedRedis
from ecoserve.ledger.embedded import free_port
from ecoserve.proto import predictor_pb2, predictor_pb2_grpc


@pytest.fixture
def services(tmp_path) -> Iterator[LocalCell]:
    cell = LocalCell("redis://unused", 0, log_dir=str(tmp_path))
    yield cell
    cell.stop()


def _start(cell: LocalCell, name: str, *args: str) -> grpc.Channel:
    port = free_port()
    cell.start_service(name, ["--port", str(port), *args], module="predictor")
    cell.wait_serving(f"127.0.0.1:{port}", timeout=120)
    return grpc.insecure_channel(f"127.0.0.1:{port}")


def test_predict_is_batched_capped_and_bad_input_is_refused(services: LocalCell) -> None:
    metrics_port = free_port()
    channel = _start(services, "predictor", "--metrics-port", str(metrics_port))
    stub = predictor_pb2_grpc.PredictorStub(channel)
    items = [predictor_pb2.PredictItem(prompt="Write a detailed essay on the history of Rome.", max_tokens=2000),
             predictor_pb2.PredictItem(prompt="Answer yes or no: is water wet?"),
             predictor_pb2.PredictItem(prompt="Write a detailed essay on the history of Rome.", max_tokens=5)]
    reply = stub.Predict(predictor_pb2.PredictRequest(items=items), timeout=30)
    assert reply.model_version == "base" and len(reply.predictions) == 3
    essay, yes_no, capped = reply.predictions
    assert all(0 < p.point <= p.upper for p in reply.predictions)
    assert essay.point > yes_no.point  # the shipped model knows essays are longer
    assert capped.upper <= 5
    assert stub.Predict(predictor_pb2.PredictRequest(), timeout=30).predictions == []

    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(predictor_pb2.PredictRequest(items=[predictor_pb2.PredictItem(prompt="x", max_tokens=-1)]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    raw = channel.unary_unary("/ecoserve.v1.Predictor/Predict", request_serializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\x0a\x03\x0a\x01\xff")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in info.value.details()

    retrain = stub.Retrain(predictor_pb2.RetrainRequest(), timeout=30)
    assert not retrain.swapped and "without Redis" in retrain.message
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    assert "ecoserve:predictor_predictions_total 3.0" in text
    assert "ecoserve:predictor_batch_size_count 2.0" in text


def _completion(rng: random.Random, i: int, version: str = "base") -> LoggedCompletion:
    """Two kinds of prompts with very different answer lengths: what a retrained model must learn."""
    if i % 2:
        return LoggedCompletion(f"Write a long detailed story number {i} about {rng.choice(['cats', 'ships'])}",
                                12, 1000, rng.randint(400, 600), "stop", 100, 200, version)
    return LoggedCompletion(f"Answer yes or no: is {i} even?", 9, 1000, rng.randint(1, 3), "stop", 100, 200, version)


def _append(url: str, entries: list[LoggedCompletion]) -> None:
    async def go() -> None:
        client = aredis.Redis.from_url(url)
        log = CompletionLog(client)
        for entry in entries:
            await log.append(entry)
        await client.aclose()

    asyncio.run(go())


def _wait_version(stub: predictor_pb2_grpc.PredictorStub, version: str, timeout: float) -> predictor_pb2.InfoResponse:
    deadline = time.monotonic() + timeout
    while True:
        info = stub.Info(predictor_pb2.InfoRequest(), timeout=10)
        if info.model_version == version:
            return info
        assert time.monotonic() < deadline, f"still {info.model_version}: {info.last_retrain_error}"
        time.sleep(0.2)


def test_retrains_on_schedule_and_on_demand_replicas_follow_and_live_error_is_reported(services: LocalCell) -> None:
    redis_server = EmbeddedRedis.start()
    try:
        url = redis_server.url
        rng = random.Random(0)
        _append(url, [_completion(rng, i) for i in range(300)])
        a = predictor_pb2_grpc.PredictorStub(_start(services, "predictor-a", "--redis-url", url,
                                                    "--retrain-interval", "0.5", "--retrain-min-new", "250"))
        b = predictor_pb2_grpc.PredictorStub(_start(services, "predictor-b", "--redis-url", url))
        _wait_version(a, "r1", timeout=120)  # scheduled: a saw 300 >= 250 new completions
        info_b = _wait_version(b, "r1", timeout=10)  # b adopts the published model without retraining
        assert info_b.completions_seen == 300

        probe = predictor_pb2.PredictRequest(items=[
            predictor_pb2.PredictItem(prompt="Write a long detailed story number 1001 about cats", max_tokens=1000),
            predictor_pb2.PredictItem(prompt="Answer yes or no: is 1002 even?", max_tokens=1000)])
        reply_a, reply_b = a.Predict(probe, timeout=30), b.Predict(probe, timeout=30)
        assert reply_a.model_version == reply_b.model_version == "r1"
        assert list(reply_a.predictions) == list(reply_b.predictions)
        story, yes_no = reply_a.predictions
        assert story.point > 200 and yes_no.point < 20, (story, yes_no)

        # live error: only completions predicted by the served model count
        served = [LoggedCompletion("p", 5, 100, actual, "stop", point, upper, "r1")
                  for actual, point, upper in [(10, 8, 12), (20, 25, 30), (30, 30, 25)]]
        _append(url, [*served, _completion(rng, 1, version="base")])
        deadline = time.monotonic() + 10
        while (info := b.Info(predictor_pb2.InfoRequest(), timeout=10)).live_error.samples < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        live = info.live_error
        assert live.samples == 3
        assert live.mae_tokens == pytest.approx((2 + 5 + 0) / 3)
        assert live.mean_relative_error == pytest.approx((2 / 10 + 5 / 20) / 3)
        assert live.upper_coverage == pytest.approx(2 / 3)

        retrain = b.Retrain(predictor_pb2.RetrainRequest(), timeout=120)
        assert retrain.swapped and retrain.model_version == "r2" and retrain.completions == 304, retrain
        assert b.Info(predictor_pb2.InfoRequest()).live_error.samples == 0  # a new model starts afresh
        _wait_version(a, "r2", timeout=10)
    finally:
        redis_server.stop()


def test_chat_items_and_per_served_model_calibration_from_the_log(services: LocalCell) -> None:
    redis_server = EmbeddedRedis.start()
    try:
        url = redis_server.url
        stub = predictor_pb2_grpc.PredictorStub(_start(services, "predictor-chat", "--redis-url", url))
        question = "Tell me about the history of Rome."
        plain = predictor_pb2.PredictItem(prompt=question, max_tokens=4000)
        chat = predictor_pb2.PredictItem(prompt="<rendered>", max_tokens=4000, prompt_tokens=900, messages=[
            predictor_pb2.Turn(role="system", content="Answer in one word."),
            predictor_pb2.Turn(role="user", content="Hi"), predictor_pb2.Turn(role="assistant", content="Hello."),
            predictor_pb2.Turn(role="user", content=question)])
        before = stub.Predict(predictor_pb2.PredictRequest(items=[plain, chat]), timeout=30).predictions
        assert before[0] != before[1]  # the chat's structure is read, not the rendered text

        # "verbose" answers 8x longer than the shipped scale expects: its calibration must follow
        long = [LoggedCompletion(f"{question} Part {i}.", 12, 4000, 8 * before[0].point, "stop", 0, 0, "base",
                                 served_model="verbose") for i in range(300)]
        _append(url, long)
        deadline = time.monotonic() + 30
        while True:
            info = stub.Info(predictor_pb2.InfoRequest(), timeout=10)
            if any(c.served_model == "verbose" and c.completions == 300 for c in info.calibrations):
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.2)
        items = [predictor_pb2.PredictItem(prompt=question, max_tokens=4000, served_model=m) for m in ("verbose", "")]
        verbose, default = stub.Predict(predictor_pb2.PredictRequest(items=items), timeout=30).predictions
        assert default == before[0]  # other served models keep the default scale
        assert verbose.point > 4 * default.point
    finally:
        redis_server.stop()
