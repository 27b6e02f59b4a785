"""The gateway's gRPC API: Generate, a server stream of tokens and text, and the health service."""

from __future__ import annotations

import secrets
from typing import Any

import grpc

from ecoserve.proto import gateway_pb2
from services.gateway.errors import ErrorKind, GatewayError
from services.gateway.frontend import Delta, Finished, Frontend, Started
from services.gateway.prepare import GenerateInput, Preparer
from services.scheduler.protocol import ProtocolError, lenient, require

SERVICE = "ecoserve.v1.Gateway"


class GatewayService:
    def __init__(self, frontend: Frontend, preparer: Preparer) -> None:
        self.frontend = frontend
        self.preparer = preparer

    async def Generate(self, request: Any, context: grpc.aio.ServicerContext):  # noqa: ANN201 - async generator
        try:
            self._authorize(context)
            try:
                msg = require(request, gateway_pb2.GenerateRequest)
            except ProtocolError as exc:
                raise GatewayError(ErrorKind.INVALID, exc.message) from None
            gen = self.preparer.prepare(to_input(msg))
        except GatewayError as exc:
            self.frontend.metrics.reject(exc.kind.name.lower())
            await _abort(context, exc)
        rid = 0
        try:
            async for event in self.frontend.generate(gen):
                if isinstance(event, Started):
                    rid = event.request_id
                    yield gateway_pb2.GenerateResponse(request_id=rid)
                elif isinstance(event, Delta):
                    yield gateway_pb2.GenerateResponse(request_id=rid, token_ids=[event.token_id], text=event.text)
                elif isinstance(event, Finished):
                    yield gateway_pb2.GenerateResponse(
                        request_id=rid, text=event.text, finished=True, finish_reason=event.reason,
                        usage=gateway_pb2.Usage(prompt_tokens=event.prompt_tokens,
                                                completion_tokens=event.completion_tokens))
        except GatewayError as exc:
            await _abort(context, exc)

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        keys = self.frontend.config.api_keys
        if not keys:
            return
        auth = dict(context.invocation_metadata() or ()).get("authorization", "")
        scheme, _, key = str(auth).partition(" ")
        if scheme.lower() != "bearer" or not any(secrets.compare_digest(key, k) for k in keys):
            raise GatewayError(ErrorKind.UNAUTHORIZED,
                               "missing or invalid API key (metadata authorization: Bearer KEY)")


def to_input(msg: gateway_pb2.GenerateRequest) -> GenerateInput:
    p = msg.params
    return GenerateInput(
        model=msg.model, prompt=msg.prompt or None, prompt_token_ids=list(msg.prompt_token_ids) or None,
        messages=[{"role": m.role, "content": m.content} for m in msg.messages] or None,
        max_tokens=p.max_tokens or None, temperature=p.temperature, top_p=p.top_p or 1.0, top_k=p.top_k,
        seed=p.seed if p.HasField("seed") else None, stop=tuple(msg.stop), stop_token_ids=tuple(p.stop_token_ids),
        ignore_eos=p.ignore_eos, priority=msg.priority, slo_class=msg.slo_class,
        ttft_slo_s=msg.slo.ttft_s or None, tpot_slo_s=msg.slo.tpot_s or None)


async def _abort(context: grpc.aio.ServicerContext, exc: GatewayError) -> None:
    if exc.retry_after_s is not None:
        context.set_trailing_metadata((("retry-after", str(exc.retry_after_s)),))
    await context.abort(exc.kind.grpc_code, exc.message)


def handlers(svc: GatewayService) -> grpc.GenericRpcHandler:
    """Generate with a parser that turns bad bytes into INVALID_ARGUMENT."""
    g = gateway_pb2
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Generate": grpc.unary_stream_rpc_method_handler(svc.Generate, lenient(g.GenerateRequest),
                                                         g.GenerateResponse.SerializeToString),
    })
