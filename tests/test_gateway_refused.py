"""A request overload control refuses (it can no longer meet its TTFT) reaches the client as a
retryable 503 with Retry-After: at once for a plain request, as an error event in a stream."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from gateway_stack import API_KEY, Stack, start_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own stack: refusing is the scheduler's opt-in (`--overload shed`), off in the shared one."""
    yield from start_stack(tmp_path_factory.mktemp("refused-stack"), scheduler_args=("--overload", "shed"))


def test_a_ttft_no_worker_can_meet_gets_503_with_retry_after(stack: Stack) -> None:
    body = {"model": stack.model.name, "prompt": "hello " * 40, "max_tokens": 4, "ttft_slo": 1e-4}
    status, headers, reply = stack.post("/v1/completions", json.dumps(body).encode())
    assert status == 503, reply
    assert headers.get("retry-after") == "1"
    assert reply["error"]["type"] == "service_unavailable" and "refused" in reply["error"]["message"]
    # The same request with a reachable target is served.
    body["ttft_slo"] = 30.0
    status, _, reply = stack.post("/v1/completions", json.dumps(body).encode())
    assert status == 200 and reply["choices"][0]["finish_reason"] in ("length", "stop")


def test_a_refused_stream_ends_with_an_error_event(stack: Stack) -> None:
    body = {"model": stack.model.name, "prompt": "hello " * 40, "max_tokens": 4, "ttft_slo": 1e-4, "stream": True}
    status, _, raw = _post_raw(stack, body)
    assert status == 200  # the stream had started when the scheduler refused it
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == 503 and "refused" in error["message"]


def _post_raw(stack: Stack, body: dict) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=30)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body).encode(),
                     headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()
