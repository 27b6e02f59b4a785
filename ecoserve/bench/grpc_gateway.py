"""gRPC client of the EcoServe gateway's Generate (protos/ecoserve/v1/gateway.proto).

Each GenerateResponse after the first carries token ids, so token times are exact per token
(the text can be empty while a multi-byte character is incomplete, and is not used to count).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from ecoserve.bench.attempt import Attempt
from ecoserve.bench.errors import BenchError
from ecoserve.proto import common_pb2, gateway_pb2, gateway_pb2_grpc
from ecoserve.workload import RequestSpec

PROBE_PROMPT = "Hello"


def _request(model: str, prompt: str, max_tokens: int, chat: bool, ignore_eos: bool) -> gateway_pb2.GenerateRequest:
    params = common_pb2.SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=ignore_eos)
    if chat:
        messages = [gateway_pb2.ChatMessage(role="user", content=prompt)]
        return gateway_pb2.GenerateRequest(model=model, messages=messages, params=params)
    return gateway_pb2.GenerateRequest(model=model, prompt=prompt, params=params)


class GrpcBackend:
    """Streams each request as one Generate call on a shared channel."""

    def __init__(self, stub: gateway_pb2_grpc.GatewayStub, model: str, api_key: str | None, chat: bool,
                 ignore_eos: bool) -> None:
        self.stub = stub
        self.model = model
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.chat = chat
        self.ignore_eos = ignore_eos

    async def send(self, attempt: Attempt) -> None:
        request = _request(self.model, attempt.spec.prompt or "", attempt.spec.output_len, self.chat, self.ignore_eos)
        attempt.sent = time.perf_counter()
        finished = False
        try:
            async for resp in self.stub.Generate(request, metadata=self.metadata):
                now = time.perf_counter()
                attempt.token_times.extend([now] * len(resp.token_ids))
                if resp.finished:
                    finished = True
                    attempt.prompt_tokens = resp.usage.prompt_tokens
                    attempt.completion_tokens = resp.usage.completion_tokens
                    if resp.finish_reason == "abort" or resp.finish_reason.startswith("error"):
                        attempt.error = f"finish_reason {resp.finish_reason}"
        except grpc.aio.AioRpcError as exc:
            attempt.error = f"gRPC {exc.code().name}: {exc.details()}"
            return
        attempt.finish = time.perf_counter()
        if not finished and attempt.error is None:
            attempt.error = "stream ended without a finished response"


@asynccontextmanager
async def grpc_backend(
    address: str, model: str | None, api_key: str | None, endpoint: str, ignore_eos: str, probe_timeout: float
) -> AsyncIterator[GrpcBackend]:
    """A Generate client checked with a one-token request. The proto has an ignore_eos field, so
    "auto" means on; an empty model means the gateway's served model. The API key goes in the
    `authorization` metadata, as the gateway reads it."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        backend = GrpcBackend(stub, model or "", api_key, endpoint == "chat", ignore_eos != "off")
        probe = Attempt(-1, RequestSpec(0.0, 1, 1, PROBE_PROMPT))
        try:
            async with asyncio.timeout(probe_timeout):
                await channel.channel_ready()
                await backend.send(probe)
        except TimeoutError as exc:
            raise BenchError(f"cannot reach the gateway at {address} within {probe_timeout:g} s") from exc
        if probe.error is not None:
            raise BenchError(f"probe request to {address} failed: {probe.error}")
        yield backend
