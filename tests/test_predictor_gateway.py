"""The gateway sends the predictor a chat's messages, its token count and the served model, and logs
them with the completion, so the predictor calibrates per served model on what it will be asked."""

from __future__ import annotations

import time

import openai
import redis
from gateway_stack import API_KEY, Stack, stack  # noqa: F401 - the fixture

from ecoserve.completion_log import LoggedCompletion, decode_messages

MODEL = "ecoserve-tiny-llama"


def test_a_chat_reaches_the_completion_log_with_its_messages_and_served_model(stack: Stack) -> None:
    client = openai.OpenAI(base_url=stack.base_url, api_key=API_KEY, max_retries=0, timeout=60)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another, for the log."}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4,
                                           extra_body={"ignore_eos": True})
    r = redis.Redis.from_url(stack.redis.url)
    deadline = time.monotonic() + 10  # the gateway appends in the background, after answering
    while not (mine := [LoggedCompletion.from_fields(f) for _, f in r.xrange("ecoserve:completions")
                        if b"for the log" in f.get(b"messages", b"")]):
        assert time.monotonic() < deadline, "no completion-log entry with the chat's messages"
        time.sleep(0.05)
    entry = mine[-1]
    assert decode_messages(entry.messages) == tuple((m["role"], m["content"]) for m in messages)
    assert entry.served_model == MODEL and entry.model_version == "base"
    assert entry.prompt_tokens == reply.usage.prompt_tokens and entry.response_tokens == 4
    assert 0 < entry.point <= entry.upper <= 4  # predicted, capped at max_tokens
