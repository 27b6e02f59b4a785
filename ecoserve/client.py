"""A small synchronous client of the scheduler: submit, stream, resume across scheduler restarts.

A stream that breaks after the request was accepted (the scheduler restarted) is resumed with
Attach from the first token not yet received, so the caller sees every token exactly once. A
Submit that breaks before acceptance is retried, which may run the request twice (at least once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from ecoserve.proto import common_pb2, scheduler_pb2, scheduler_pb2_grpc

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
              grpc.StatusCode.INTERNAL)


@dataclass(slots=True)
class Completion:
    request_id: int
    tokens: list[int]
    finish_reason: str


class EcoServeClient:
    def __init__(self, target: str, reconnect_timeout_s: float = 60.0) -> None:
        self.channel = grpc.insecure_channel(target)
        self.stub = scheduler_pb2_grpc.SchedulerStub(self.channel)
        self.reconnect_timeout_s = reconnect_timeout_s

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> EcoServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, prompt: Sequence[int], max_tokens: int, *, temperature: float = 1.0, top_p: float = 1.0,
               top_k: int = 0, seed: int | None = None, stop_token_ids: Sequence[int] = (), ignore_eos: bool = False,
               prediction: tuple[int, int, int] | None = None, slo: tuple[float, float] | None = None,
               ) -> Iterator[scheduler_pb2.TokenEvent]:
        """Yield token events (the first one carries only the request id; the last has `finished`).
        `slo`: (TTFT, TPOT) targets in seconds [default: the scheduler's]."""
        params = common_pb2.SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens,
                                           stop_token_ids=list(stop_token_ids), ignore_eos=ignore_eos, seed=seed)
        submit = scheduler_pb2.SubmitRequest(prompt_token_ids=list(prompt), params=params)
        if slo is not None:
            submit.slo.CopyFrom(common_pb2.Slo(ttft_s=slo[0], tpot_s=slo[1]))
        if prediction is not None:
            submit.prediction.CopyFrom(common_pb2.Prediction(point=prediction[0], upper=prediction[1],
                                                             bucket=prediction[2]))
        rid: int | None = None
        received = 0
        deadline = time.monotonic() + self.reconnect_timeout_s
        while True:
            if rid is None:
                call = self.stub.Submit(submit, wait_for_ready=True)
            else:
                call = self.stub.Attach(scheduler_pb2.AttachRequest(request_id=rid, from_index=received),
                                        wait_for_ready=True)
            try:
                for event in call:
                    if rid is None:
                        rid = event.request_id
                    elif event.has_token:
                        if event.index != received:
                            continue  # already delivered before the stream broke
                        received += 1
                    yield event
                    if event.finished:
                        return
                raise grpc.RpcError("stream ended without a finish")  # treated like a broken stream
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNAVAILABLE
                if code not in _RETRYABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def generate(self, prompt: Sequence[int], max_tokens: int, **kwargs: object) -> Completion:
        tokens: list[int] = []
        rid, reason = -1, ""
        for event in self.stream(prompt, max_tokens, **kwargs):  # type: ignore[arg-type]
            rid = event.request_id
            if event.has_token:
                tokens.append(event.token_id)
            if event.finished:
                reason = event.finish_reason
        return Completion(rid, tokens, reason)

    def cancel(self, request_id: int) -> bool:
        return self.stub.Cancel(scheduler_pb2.CancelRequest(request_id=request_id)).cancelled

    def stats(self) -> scheduler_pb2.StatsResponse:
        return self.stub.Stats(scheduler_pb2.StatsRequest(), wait_for_ready=True)
