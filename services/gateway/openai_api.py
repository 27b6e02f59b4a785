"""The OpenAI-compatible HTTP API: /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics.

Bodies are parsed here (not by FastAPI's validation) so that every bad input gets a 400 in
OpenAI's error format with a message saying what is wrong. EcoServe's own fields ride along in the
body (`extra_body` in the openai client): priority, slo_class, ttft_slo, tpot_slo, top_k,
stop_token_ids, ignore_eos.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

from services.gateway.errors import ErrorKind, GatewayError, invalid
from services.gateway.frontend import Delta, Finished, Frontend, Started
from services.gateway.prepare import GenerateInput, Preparer

Kind = Literal["completion", "chat"]


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI fields with no effect here (user, ...) are accepted

    model: StrictStr = ""
    max_tokens: StrictInt | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: StrictInt = 0
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = 1
    logprobs: Any = None
    stop_token_ids: list[StrictInt] = Field(default_factory=list)
    ignore_eos: StrictBool = False
    priority: StrictInt = 0
    slo_class: StrictStr = ""
    ttft_slo: float | None = None
    tpot_slo: float | None = None

    def common(self) -> dict[str, Any]:
        if self.n != 1:
            raise invalid("n must be 1: one choice per request")
        if self.logprobs not in (None, False, 0):
            raise invalid("logprobs are not supported")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return dict(model=self.model, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                    seed=self.seed, stop=stop, stop_token_ids=tuple(self.stop_token_ids), ignore_eos=self.ignore_eos,
                    priority=self.priority, slo_class=self.slo_class, ttft_slo_s=self.ttft_slo,
                    tpot_slo_s=self.tpot_slo)


class CompletionBody(_Body):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    echo: StrictBool = False
    best_of: StrictInt | None = None

    def to_input(self) -> GenerateInput:
        if self.echo or (self.best_of or 1) != 1:
            raise invalid("echo and best_of are not supported")
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], (str, list)):
            if len(p) != 1:
                raise invalid("one prompt per request: prompt lists must have one element")
            p = p[0]
        if isinstance(p, str):
            return GenerateInput(prompt=p, max_tokens=self.max_tokens, **self.common())
        return GenerateInput(prompt_token_ids=list(p), max_tokens=self.max_tokens, **self.common())


class TextPart(BaseModel):
    type: Literal["text"]
    text: StrictStr


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: StrictStr
    content: StrictStr | list[TextPart] | None = None


class ChatBody(_Body):
    messages: list[ChatMessageIn]
    max_completion_tokens: StrictInt | None = None

    def to_input(self) -> GenerateInput:
        messages = [{"role": m.role, "content": m.content if isinstance(m.content, str)
                     else "".join(part.text for part in m.content or [])} for m in self.messages]
        return GenerateInput(messages=messages, max_tokens=self.max_completion_tokens or self.max_tokens,
                             **self.common())


def error_response(exc: GatewayError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    body = {"error": {"message": exc.message, "type": exc.kind.openai_type, "param": None,
                      "code": exc.kind.http_status}}
    return JSONResponse(body, status_code=exc.kind.http_status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuse bodies over the limit (413) whatever their Content-Length says."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = GatewayError(ErrorKind.TOO_LARGE, f"request body over {self.max_bytes} bytes")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_response(too_large)(scope, receive, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large
            return message

        try:
            await self.app(scope, limited, send)
        except GatewayError as exc:
            await error_response(exc)(scope, receive, send)


def create_app(frontend: Frontend, preparer: Preparer) -> FastAPI:
    app = FastAPI(title="EcoServe gateway", version="1", docs_url=None, redoc_url=None)
    config = frontend.config
    metrics = frontend.metrics
    model_name = preparer.model_name
    created = int(time.time())

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc)

    def authorize(request: Request) -> None:
        if not config.api_keys:
            return
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(secrets.compare_digest(key, k) for k in config.api_keys):
            metrics.reject("unauthorized")
            raise GatewayError(ErrorKind.UNAUTHORIZED, "missing or invalid API key (Authorization: Bearer KEY)")

    async def parse(request: Request, model: type[_Body]) -> Any:
        raw = await request.body()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid("the body is not valid UTF-8") from None
        except json.JSONDecodeError as exc:
            raise invalid(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise invalid("the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise invalid("; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                                    for e in exc.errors(include_url=False))) from None

    async def handle(request: Request, kind: Kind) -> Response:
        authorize(request)
        body = await parse(request, CompletionBody if kind == "completion" else ChatBody)
        try:
            gen = preparer.prepare(body.to_input())
        except GatewayError as exc:
            metrics.reject(exc.kind.name.lower())
            raise
        events = frontend.generate(gen)
        first = await anext(events)  # refusals (400/429/503) surface here, before any byte is sent
        assert isinstance(first, Started)
        reply = Reply(kind, first.request_id, model_name)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(reply.sse(events, include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await _until_done_or_gone(request, reply.collect(events))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await handle(request, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await handle(request, "chat")

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        authorize(request)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "ecoserve", "max_model_len": preparer.files.max_model_len}]}

    @app.get("/health")
    async def health() -> JSONResponse:
        """Ready: the scheduler answers its health check (the liveness probe is /live)."""
        if await frontend.scheduler.serving():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "scheduler unavailable"}, status_code=503)

    @app.get("/live")
    async def live() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.scheduler.update(await frontend.scheduler.stats(timeout_s=1.0))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return BodyLimit(app, config.limits.max_body_bytes)  # type: ignore[return-value]


async def _until_done_or_gone(request: Request, work: Awaitable[dict]) -> Response:
    """Await the whole answer unless the client disconnects first; then stop the generation."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()  # closing the collection closes the generation, which cancels the request
        await asyncio.gather(task, return_exceptions=True)
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    return JSONResponse(task.result())


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Reply:
    """OpenAI's response shapes for one request, whole or as server-sent events."""

    def __init__(self, kind: Kind, request_id: int, model: str) -> None:
        self.kind = kind
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{request_id}"
        self.model = model
        self.created = int(time.time())

    def _envelope(self, choices: list[dict], *, chunk: bool) -> dict:
        obj = {"completion": "text_completion", "chat": "chat.completion.chunk" if chunk else "chat.completion"}
        return {"id": self.id, "object": obj[self.kind], "created": self.created, "model": self.model,
                "choices": choices}

    def _choice(self, text: str, finish: str | None, *, chunk: bool, first: bool = False) -> dict:
        if self.kind == "completion":
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        if chunk:
            delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": finish}

    @staticmethod
    def _usage(done: Finished) -> dict:
        return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens}

    async def collect(self, events: AsyncIterator[Any]) -> dict:
        parts: list[str] = []
        try:
            async for event in events:
                if isinstance(event, Delta):
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    if event.reason.startswith("error"):
                        raise GatewayError(ErrorKind.FAILED, f"generation failed: {event.reason}")
                    parts.append(event.text)
                    body = self._envelope([self._choice("".join(parts), event.reason, chunk=False)], chunk=False)
                    return {**body, "usage": self._usage(event)}
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        raise GatewayError(ErrorKind.FAILED, "generation ended without a finish")

    async def sse(self, events: AsyncIterator[Any], include_usage: bool) -> AsyncIterator[bytes]:
        first = True
        try:
            async for event in events:
                if isinstance(event, Delta):
                    if event.text or first:
                        yield _sse(self._envelope([self._choice(event.text, None, chunk=True, first=first)],
                                                  chunk=True))
                        first = False
                elif isinstance(event, Finished):
                    if event.reason.startswith("error"):
                        yield _sse({"error": {"message": f"generation failed: {event.reason}",
                                              "type": ErrorKind.FAILED.openai_type, "code": 500}})
                        break
                    yield _sse(self._envelope([self._choice(event.text, event.reason, chunk=True, first=first)],
                                              chunk=True))
                    if include_usage:
                        yield _sse({**self._envelope([], chunk=True), "usage": self._usage(event)})
        except GatewayError as exc:  # after the 200 is sent, errors travel as an event
            yield _sse({"error": {"message": exc.message, "type": exc.kind.openai_type, "code": exc.kind.http_status}})
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        yield b"data: [DONE]\n\n"


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
