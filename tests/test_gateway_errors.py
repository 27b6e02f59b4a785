"""Every bad input gets its error (HTTP and gRPC), overload gets 429 + Retry-After, a client that goes
away cancels its request, and the stack keeps serving throughout."""

from __future__ import annotations

import json
import socket
import time

import grpc
import openai
import pytest
import redis
from gateway_stack import API_KEY, Stack, stack, start_stack  # noqa: F401 - the fixture

from ecoserve.client import EcoServeClient
from ecoserve.proto import gateway_pb2, gateway_pb2_grpc

MODEL = "ecoserve-tiny-llama"
AUTH = (("authorization", f"Bearer {API_KEY}"),)
GOOD = {"model": MODEL, "prompt": "Hello", "max_tokens": 4}


def _still_serves(stack: Stack) -> None:
    status, _, body = stack.post("/v1/completions", json.dumps(GOOD).encode())
    assert status == 200 and body["usage"]["completion_tokens"] >= 1, body


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not valid JSON"),
    (b'{"prompt": "\xff\xfe", "max_tokens": 4}', "not valid UTF-8"),
    (b'["a list"]', "JSON object"),
    (json.dumps({**GOOD, "prompt": ""}).encode(), "exactly one non-empty input"),
    (json.dumps({**GOOD, "prompt": ["a", "b"]}).encode(), "one prompt per request"),
    (json.dumps({**GOOD, "prompt": 5}).encode(), "prompt"),
    (json.dumps({**GOOD, "max_tokens": 0}).encode(), "max_tokens must be in [1, 3000]"),
    (json.dumps({**GOOD, "max_tokens": 5000}).encode(), "max_tokens must be in [1, 3000]"),
    (json.dumps({**GOOD, "max_tokens": "many"}).encode(), "max_tokens"),
    (json.dumps({**GOOD, "temperature": -1}).encode(), "temperature"),
    (json.dumps({**GOOD, "top_p": 0}).encode(), "top_p"),
    (json.dumps({**GOOD, "n": 2}).encode(), "n must be 1"),
    (json.dumps({**GOOD, "model": "gpt-4"}).encode(), "not served here"),
    (json.dumps({**GOOD, "slo_class": "gold"}).encode(), "unknown slo_class"),
    (json.dumps({**GOOD, "ttft_slo": -2}).encode(), "ttft_slo"),
    (json.dumps({**GOOD, "stop": ["a", "b", "c", "d", "e"]}).encode(), "at most 4 stop strings"),
    (json.dumps({**GOOD, "prompt": "x" * 600}).encode(), "the limit is 512"),
    (json.dumps({**GOOD, "prompt": [70000]}).encode(), "not a token id"),
])
def test_bad_completion_bodies_get_400_with_a_message(stack: Stack, body: bytes, message: str) -> None:
    status, _, reply = stack.post("/v1/completions", body)
    assert status == 400, reply
    assert message in reply["error"]["message"] and reply["error"]["type"] == "invalid_request_error"


def test_bad_chat_bodies_and_the_openai_client_get_400(stack: Stack) -> None:
    for body in ({"model": MODEL, "messages": []}, {"model": MODEL, "messages": [{"content": "no role"}]},
                 {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}):
        status, _, reply = stack.post("/v1/chat/completions", json.dumps(body).encode())
        assert status == 400, (body, reply)
    client = openai.OpenAI(base_url=stack.base_url, api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model=MODEL, prompt="x", max_tokens=-1)
    _still_serves(stack)


def test_oversized_body_gets_413(stack: Stack) -> None:
    status, _, reply = stack.post("/v1/completions", json.dumps({**GOOD, "prompt": "y" * 70_000}).encode())
    assert status == 413 and "request body over 65536 bytes" in reply["error"]["message"]
    _still_serves(stack)


def test_bad_or_missing_api_key_gets_401(stack: Stack) -> None:
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": ""}):
        status, _, reply = stack.post("/v1/completions", json.dumps(GOOD).encode(), headers)
        assert status == 401 and "API key" in reply["error"]["message"]
    client = openai.OpenAI(base_url=stack.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert stack.get("/health")[0] == 200  # probes need no key


def test_grpc_bad_inputs_get_invalid_argument_or_unauthenticated(stack: Stack) -> None:
    with grpc.insecure_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        raw = channel.unary_stream("/ecoserve.v1.Gateway/Generate", request_serializer=lambda b: b,
                                   response_deserializer=gateway_pb2.GenerateResponse.FromString)
        cases = [
            (lambda: list(raw(b"\x12\xff\xff", metadata=AUTH)), grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
            (lambda: list(raw(b"\x12\x02\xc3\x28", metadata=AUTH)), grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
            (lambda: list(stub.Generate(gateway_pb2.GenerateRequest(), metadata=AUTH)),
             grpc.StatusCode.INVALID_ARGUMENT, "exactly one"),
            (lambda: list(stub.Generate(gateway_pb2.GenerateRequest(prompt="x", params={"max_tokens": 3001}),
                                        metadata=AUTH)), grpc.StatusCode.INVALID_ARGUMENT, "max_tokens"),
            (lambda: list(stub.Generate(gateway_pb2.GenerateRequest(prompt="x", params={"top_p": 2.0}),
                                        metadata=AUTH)), grpc.StatusCode.INVALID_ARGUMENT, "top_p"),
            (lambda: list(stub.Generate(gateway_pb2.GenerateRequest(prompt="x", model="other"), metadata=AUTH)),
             grpc.StatusCode.INVALID_ARGUMENT, "not served here"),
            (lambda: list(stub.Generate(gateway_pb2.GenerateRequest(prompt="x"))),
             grpc.StatusCode.UNAUTHENTICATED, "API key"),
            (lambda: list(stub.Generate(gateway_pb2.GenerateRequest(prompt="x" * 70_000), metadata=AUTH)),
             grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
        ]
        for call, code, message in cases:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == code and message in info.value.details(), info.value
        events = list(stub.Generate(gateway_pb2.GenerateRequest(prompt="ok", params={"max_tokens": 3}), metadata=AUTH))
        assert events[-1].finished and events[-1].usage.completion_tokens >= 1


def _open_stream(stack: Stack) -> tuple[openai.Stream, int]:
    client = openai.OpenAI(base_url=stack.base_url, api_key=API_KEY, max_retries=0, timeout=60)
    stream = client.completions.create(model=MODEL, prompt="go on", max_tokens=3000, stream=True,
                                       extra_body={"ignore_eos": True})
    first = next(iter(stream))
    return stream, int(first.id.removeprefix("cmpl-"))


def _finish_reason(stack: Stack, rid: int, timeout: float = 10.0) -> bytes | None:
    client = redis.Redis.from_url(stack.redis.url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = client.hget(f"ecoserve:req:{rid}", "finish_reason")
        if reason is not None:
            return reason
        time.sleep(0.05)
    return None


def test_full_queue_gets_429_with_retry_after_and_disconnects_cancel(stack: Stack) -> None:
    """max_queue is 2: two long streams fill it; closing them cancels both at the scheduler."""
    (s1, r1), (s2, r2) = _open_stream(stack), _open_stream(stack)
    status, headers, reply = stack.post("/v1/completions", json.dumps(GOOD).encode())
    assert status == 429 and headers["retry-after"] == "1" and "in flight" in reply["error"]["message"]
    with grpc.insecure_channel(stack.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            list(gateway_pb2_grpc.GatewayStub(channel).Generate(gateway_pb2.GenerateRequest(prompt="x"),
                                                                metadata=AUTH))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("retry-after", "1") in tuple(info.value.trailing_metadata())
    s1.close()
    s2.close()
    assert _finish_reason(stack, r1) == b"abort" and _finish_reason(stack, r2) == b"abort"
    _still_serves(stack)


def test_grpc_cancel_and_http_disconnect_without_streaming_cancel_the_request(stack: Stack) -> None:
    with grpc.insecure_channel(stack.grpc_address) as channel:
        call = gateway_pb2_grpc.GatewayStub(channel).Generate(
            gateway_pb2.GenerateRequest(prompt="long", params={"max_tokens": 3000, "ignore_eos": True}),
            metadata=AUTH)
        rid = next(call).request_id
        next(call)
        call.cancel()
    assert _finish_reason(stack, rid) == b"abort"

    before = int(redis.Redis.from_url(stack.redis.url).get("ecoserve:next_id"))
    body = json.dumps({**GOOD, "max_tokens": 3000, "ignore_eos": True}).encode()
    with socket.create_connection(("127.0.0.1", stack.http_port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 10
        while int(redis.Redis.from_url(stack.redis.url).get("ecoserve:next_id")) == before:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert _finish_reason(stack, before + 1) == b"abort"
    with EcoServeClient(stack.cell.address) as client:
        assert client.stats().unfinished == 0
    _still_serves(stack)


def test_scheduler_down_gets_503_with_retry_after(tmp_path) -> None:
    """A gateway whose scheduler is gone answers 503 and is not ready; a gateway alone is enough here."""
    from ecoserve.launch import LocalCell
    from ecoserve.ledger.embedded import free_port
    from ecoserve.serve_cli import tiny_model

    cell = LocalCell("redis://unused", free_port(), log_dir=str(tmp_path))
    http_port, grpc_port = free_port(), free_port()
    try:
        cell.start_service("gateway", ["--model", str(tiny_model()), "--scheduler", f"127.0.0.1:{free_port()}",
                                       "--http-port", str(http_port), "--grpc-port", str(grpc_port)])
        cell.wait_serving(f"127.0.0.1:{grpc_port}", timeout=60)
        lone = Stack(cell, None, tiny_model(), http_port, grpc_port)  # type: ignore[arg-type]
        status, headers, reply = lone.post("/v1/completions", json.dumps(GOOD).encode())
        assert status == 503 and headers["retry-after"] == "1" and "unavailable" in reply["error"]["message"]
        assert lone.get("/health")[0] == 503 and lone.get("/live")[0] == 200
    finally:
        cell.stop()
