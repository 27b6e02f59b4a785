"""OpenAI-compatible HTTP client: streaming /v1/completions or /v1/chat/completions.

Requests are built as vLLM's benchmark_serving builds them: greedy, `max_tokens` = the trace's
output length, `ignore_eos` so the server generates all of them, and `stream_options.
include_usage` so the last chunk says how many tokens were really produced.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from ecoserve.bench.attempt import Attempt
from ecoserve.bench.errors import BenchError
from ecoserve.bench.sse import SseDecoder

ENDPOINTS = ("completions", "chat")
PROBE_PROMPT = "Hello"


def server_root(base_url: str) -> str:
    """The server's root URL; a trailing /v1 (as OpenAI clients take it) is accepted and removed."""
    return base_url.rstrip("/").removesuffix("/v1")


@dataclass(frozen=True, slots=True)
class HttpTarget:
    base_url: str
    model: str
    api_key: str | None
    endpoint: str
    ignore_eos: bool

    @property
    def url(self) -> str:
        path = "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"
        return server_root(self.base_url) + path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def payload(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.endpoint == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body


def _apply(payload: str, now: float, attempt: Attempt, chat: bool) -> None:
    """One SSE data payload: a text delta is a token; usage and errors are kept."""
    if payload == "[DONE]":
        return
    data = json.loads(payload)
    if "error" in data:
        err = data["error"]
        attempt.error = f"stream error: {err.get('message', err) if isinstance(err, dict) else err}"
        return
    choices = data.get("choices") or []
    if choices:
        text = (choices[0].get("delta") or {}).get("content") if chat else choices[0].get("text")
        if text:
            attempt.token_times.append(now)
    usage = data.get("usage")
    if usage:
        attempt.prompt_tokens = usage.get("prompt_tokens")
        attempt.completion_tokens = usage.get("completion_tokens")


class HttpBackend:
    """Streams each request over one shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, target: HttpTarget) -> None:
        self.session = session
        self.target = target
        self.model = target.model
        self.ignore_eos = target.ignore_eos

    async def send(self, attempt: Attempt) -> None:
        body = self.target.payload(attempt.spec.prompt or "", attempt.spec.output_len)
        chat = self.target.endpoint == "chat"
        attempt.sent = time.perf_counter()
        async with self.session.post(self.target.url, json=body, headers=self.target.headers()) as resp:
            if resp.status != 200:
                attempt.error = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                return
            decoder = SseDecoder()
            async for chunk in resp.content.iter_any():
                now = time.perf_counter()
                for payload in decoder.feed(chunk):
                    _apply(payload, now, attempt, chat)
            for payload in decoder.close():
                _apply(payload, time.perf_counter(), attempt, chat)
        attempt.finish = time.perf_counter()


async def _served_model(session: aiohttp.ClientSession, target: HttpTarget) -> str:
    """The first model GET /v1/models lists, for runs that name none."""
    async with session.get(server_root(target.base_url) + "/v1/models", headers=target.headers()) as resp:
        if resp.status != 200:
            raise BenchError(f"GET /v1/models: HTTP {resp.status}: {(await resp.text())[:200]}; give --model")
        models = (await resp.json()).get("data") or []
    if not models:
        raise BenchError("the server lists no model; give --model")
    return str(models[0]["id"])


async def _probe(session: aiohttp.ClientSession, target: HttpTarget) -> tuple[int, str]:
    async with session.post(target.url, json=target.payload(PROBE_PROMPT, 1), headers=target.headers()) as resp:
        return resp.status, (await resp.text())[:200]


async def _settle_ignore_eos(session: aiohttp.ClientSession, target: HttpTarget, mode: str) -> bool:
    """A one-token request before the run (fails fast on a wrong URL, model or key). In "auto"
    mode it also finds whether the server takes `ignore_eos`: a 400/422 with it and a 200
    without means it does not (OpenAI's own API rejects unknown fields)."""
    choices = {"on": [True], "off": [False], "auto": [True, False]}[mode]
    for flag in choices:
        status, body = await _probe(session, replace(target, ignore_eos=flag))
        if status == 200:
            return flag
        if status not in (400, 422) or flag is choices[-1]:
            break
    raise BenchError(f"probe request to {target.url} failed: HTTP {status}: {body}")


@asynccontextmanager
async def http_backend(
    base_url: str,
    model: str | None,
    api_key: str | None,
    endpoint: str,
    ignore_eos: str,
    max_concurrency: int | None,
    probe_timeout: float,
) -> AsyncIterator[HttpBackend]:
    """An HTTP backend whose model and ignore_eos are settled against the live server."""
    # limit=0: aiohttp would otherwise cap the run at 100 open streams without saying so.
    connector = aiohttp.TCPConnector(limit=max_concurrency or 0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        target = HttpTarget(base_url, model or "", api_key, endpoint, ignore_eos=False)
        try:
            async with asyncio.timeout(probe_timeout):
                if not model:
                    target = replace(target, model=await _served_model(session, target))
                target = replace(target, ignore_eos=await _settle_ignore_eos(session, target, ignore_eos))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BenchError(f"cannot reach {target.url}: {type(exc).__name__}: {exc}") from exc
        yield HttpBackend(session, target)
