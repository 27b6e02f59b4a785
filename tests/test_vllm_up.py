"""`ecoserve up --engine vllm` on CPU, as the README starts it: the OpenAI client (and the gateway's
gRPC API, which shows token ids) gets vLLM's own `LLM.generate` greedy tokens for the same prompts,
streamed or not; a token id outside the vocabulary ends that request with an error and the worker
serves on.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import openai
import pytest
from tokenizers import Tokenizer
from up_process import start_up, stop_up
from vllm_model import VOCAB, reference_tokens

from ecoserve.client import EcoServeClient
from ecoserve.ledger.embedded import free_port
from ecoserve.proto import gateway_pb2, gateway_pb2_grpc
from ecoserve.serve_cli import TINY_MODEL_NAME, tiny_vllm_model

PROMPTS = [[(13 * i + 5 * j) % 256 for j in range(3 + 41 * i)] for i in range(6)]
MAX_TOKENS = 20


@dataclass(frozen=True, slots=True)
class Up:
    model: Path
    http_port: int
    grpc_port: int
    scheduler: str


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    cache = tmp_path_factory.mktemp("cache")
    model = tiny_vllm_model(cache)  # what `up` serves by default, built here so the reference reads it too
    ports = [free_port() for _ in range(4)]
    proc, ready = start_up("--engine", "vllm", "--port", str(ports[0]), "--http-port", str(ports[1]),
                           "--grpc-port", str(ports[2]), "--predictor-port", str(ports[3]), "--cache-dir", str(cache),
                           "--log-dir", str(tmp_path_factory.mktemp("logs")), timeout=400)
    assert "2 vllm workers" in ready and str(model) in ready
    try:
        yield Up(model, ports[1], ports[2], f"127.0.0.1:{ports[0]}")
    finally:
        stop_up(proc, timeout=60)


@pytest.fixture(scope="module")
def expected(up: Up) -> list[list[int]]:
    return reference_tokens(up.model, [(p, MAX_TOKENS) for p in PROMPTS])


def _client(up: Up) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{up.http_port}/v1", api_key="none", max_retries=0, timeout=120)


def test_openai_completions_stream_llm_generate_tokens(up: Up, expected: list[list[int]]) -> None:
    client = _client(up)
    text = Tokenizer.from_file(str(up.model / "tokenizer.json")).decode

    def whole(prompt: list[int]) -> openai.types.Completion:
        return client.completions.create(model=TINY_MODEL_NAME, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)

    def streamed(prompt: list[int]) -> str:
        chunks = client.completions.create(model=TINY_MODEL_NAME, prompt=prompt, max_tokens=MAX_TOKENS,
                                           temperature=0, stream=True)
        return "".join(c.choices[0].text for c in chunks if c.choices)

    with ThreadPoolExecutor(2 * len(PROMPTS)) as pool:
        replies = list(pool.map(whole, PROMPTS))
        streams = list(pool.map(streamed, PROMPTS))
    for reply, stream, want in zip(replies, streams, expected, strict=True):
        assert reply.usage.completion_tokens == len(want)
        assert reply.choices[0].text == text(want) == stream


def test_gateway_token_ids_are_llm_generate_tokens(up: Up, expected: list[list[int]]) -> None:
    def ids(prompt: list[int]) -> list[int]:
        with grpc.insecure_channel(f"127.0.0.1:{up.grpc_port}") as channel:
            events = gateway_pb2_grpc.GatewayStub(channel).Generate(gateway_pb2.GenerateRequest(
                prompt_token_ids=prompt, params={"max_tokens": MAX_TOKENS}), timeout=120)  # temperature 0: greedy
            return [t for e in events for t in e.token_ids]

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        assert list(pool.map(ids, PROMPTS)) == expected


def test_a_token_outside_the_vocabulary_ends_its_request_not_the_worker(up: Up, expected: list[list[int]]) -> None:
    with EcoServeClient(up.scheduler) as client:
        before = {w.name: w.iterations for w in client.stats().workers}
        with ThreadPoolExecutor(2) as pool:
            good = pool.submit(client.generate, PROMPTS[1], MAX_TOKENS, temperature=0.0)
            bad = pool.submit(client.generate, [1, 2, VOCAB + 7], MAX_TOKENS, temperature=0.0)
            good_done, bad_done = good.result(timeout=120), bad.result(timeout=120)
        after = {w.name: w.iterations for w in client.stats().workers}
    assert bad_done.finish_reason.startswith("error") and f"token id {VOCAB + 7}" in bad_done.finish_reason
    assert bad_done.tokens == []
    assert good_done.tokens == expected[1]
    assert after.keys() == before.keys(), "no worker lost its session"
    assert all(after[name] >= before[name] for name in before), "iteration counts went on (no reconnect)"
