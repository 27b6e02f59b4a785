"""The official openai client through the gateway to a torch worker (tiny model, CPU), both APIs."""

from __future__ import annotations

import time

import grpc
import openai
import pytest
import redis
from gateway_stack import API_KEY, Stack, stack  # noqa: F401 - the fixture
from tokenizers import Tokenizer

from ecoserve.proto import gateway_pb2, gateway_pb2_grpc, scheduler_pb2

MODEL = "ecoserve-tiny-llama"
PROMPT = "The quick brown fox"


@pytest.fixture
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=API_KEY, max_retries=0, timeout=60)


def _tokenizer(stack: Stack) -> Tokenizer:
    return Tokenizer.from_file(str(stack.model / "tokenizer.json"))


def _grpc_generate(stack: Stack, request: gateway_pb2.GenerateRequest) -> list[gateway_pb2.GenerateResponse]:
    with grpc.insecure_channel(stack.grpc_address) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        return list(stub.Generate(request, metadata=(("authorization", f"Bearer {API_KEY}"),), timeout=60))


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_completion_matches_grpc_generate_and_counts_tokens(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=12, temperature=0,
                                      extra_body={"ignore_eos": True})
    choice = reply.choices[0]
    assert choice.finish_reason == "length"
    prompt_ids = _tokenizer(stack).encode(PROMPT).ids
    assert reply.usage.prompt_tokens == len(prompt_ids)
    assert reply.usage.completion_tokens == 12
    assert reply.id.startswith("cmpl-")

    events = _grpc_generate(stack, gateway_pb2.GenerateRequest(
        prompt=PROMPT, params={"max_tokens": 12, "ignore_eos": True}))  # temperature 0: greedy
    assert events[0].request_id > 0 and not events[0].token_ids
    ids = [t for e in events for t in e.token_ids]
    assert len(ids) == 12 and events[-1].finished and events[-1].finish_reason == "length"
    assert events[-1].usage.prompt_tokens == len(prompt_ids) and events[-1].usage.completion_tokens == 12
    text = "".join(e.text for e in events)
    assert text == _tokenizer(stack).decode(ids)
    assert text == choice.text  # greedy: the same answer through either API


def test_streaming_completion_equals_the_whole_one_and_ends_with_usage(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0)
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_with_default_template_streaming_and_not(client: openai.OpenAI, stack: Stack) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0)
    rendered = "<|system|>\nBe brief.\n<|user|>\nHi!\n<|assistant|>\n"  # docs/gateway.md's default template
    assert reply.usage.prompt_tokens == len(_tokenizer(stack).encode(rendered, add_special_tokens=False).ids)
    assert reply.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == reply.usage.prompt_tokens

    grpc_events = _grpc_generate(stack, gateway_pb2.GenerateRequest(
        messages=[gateway_pb2.ChatMessage(**m) for m in messages], params={"max_tokens": 10}))
    assert "".join(e.text for e in grpc_events) == reply.choices[0].message.content


def test_stop_string_cuts_the_answer_and_the_request_ends(client: openai.OpenAI, stack: Stack) -> None:
    free = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    stop = next((free[i:i + 2] for i in range(3, len(free) - 1) if "\ufffd" not in free[i:i + 2]), None)
    assert stop is not None, f"no printable stop string in {free!r}"
    cut = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=40, temperature=0, stop=[stop],
                                    extra_body={"ignore_eos": True})
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == free[:free.index(stop)]
    # The gateway cancels the rest at the scheduler after answering: the request ends shortly.
    deadline = time.monotonic() + 15
    while _stats(stack).unfinished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stats(stack).unfinished == 0


def test_priority_slo_class_and_prediction_reach_the_scheduler(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.completions.create(model=MODEL, prompt="Write a long story about a dragon.", max_tokens=20,
                                      extra_body={"priority": 7, "slo_class": "interactive", "tpot_slo": 0.2})
    rid = int(reply.id.removeprefix("cmpl-"))
    submit = scheduler_pb2.SubmitRequest.FromString(_redis(stack).hget(f"ecoserve:req:{rid}", "submit"))
    assert submit.priority == 7
    assert (submit.slo.ttft_s, submit.slo.tpot_s) == (0.5, pytest.approx(0.2))
    assert submit.HasField("prediction")  # the predictor answered
    assert 0 < submit.prediction.point <= submit.prediction.upper <= 20

    events = _grpc_generate(stack, gateway_pb2.GenerateRequest(prompt="Hello", params={"max_tokens": 3},
                                                               priority=-3, slo_class="batch"))
    submit = scheduler_pb2.SubmitRequest.FromString(
        _redis(stack).hget(f"ecoserve:req:{events[0].request_id}", "submit"))
    assert submit.priority == -3 and (submit.slo.ttft_s, submit.slo.tpot_s) == (30.0, 1.0)


def test_finished_requests_go_to_the_completion_log_and_metrics(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.completions.create(model=MODEL, prompt="Log me", max_tokens=5, extra_body={"ignore_eos": True})
    deadline = time.monotonic() + 10  # the gateway appends in the background, after answering
    while not (mine := [f for _, f in _redis(stack).xrange("ecoserve:completions") if f[b"prompt"] == b"Log me"]):
        assert time.monotonic() < deadline, "no completion-log entry"
        time.sleep(0.05)
    entry = mine[-1]
    assert int(entry[b"response_tokens"]) == reply.usage.completion_tokens == 5
    assert entry[b"finish_reason"] == b"length" and entry[b"model_version"] == b"base"
    assert 0 < int(entry[b"point"]) <= int(entry[b"upper"]) <= 5

    status, text = stack.get("/metrics")
    assert status == 200
    samples = _samples(text)
    assert samples['vllm:time_to_first_token_seconds_count{model_name="ecoserve-tiny-llama"}'] >= 1
    assert samples['vllm:e2e_request_latency_seconds_count{model_name="ecoserve-tiny-llama"}'] >= 1
    assert samples['ecoserve:predictor_abs_error_tokens_count{model_name="ecoserve-tiny-llama"}'] >= 1
    assert samples["ecoserve:scheduler_up"] == 1.0
    assert samples['ecoserve:workers{model_name="ecoserve-tiny-llama"}'] == 1.0
    assert 'vllm:num_requests_running{model_name="ecoserve-tiny-llama"}' in samples
    assert 0.0 <= samples['vllm:kv_cache_usage_perc{model_name="ecoserve-tiny-llama"}'] <= 1.0
    assert 'vllm:num_preemptions_total{model_name="ecoserve-tiny-llama"}' in samples
    # The torch engine reuses no KV, so its prompts are never looked up in a prefix cache.
    assert samples['ecoserve:prefix_cache_query_blocks_total{model_name="ecoserve-tiny-llama"}'] == 0.0
    assert samples['ecoserve:prefix_cache_hit_blocks_total{model_name="ecoserve-tiny-llama"}'] == 0.0
    assert any(k.startswith("ecoserve:slo_attainment{") for k in samples)
    assert stack.get("/health")[0] == 200


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def _redis(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis.url)


def _stats(stack: Stack) -> scheduler_pb2.StatsResponse:
    from ecoserve.client import EcoServeClient

    with EcoServeClient(stack.cell.address) as c:
        return c.stats()
