"""The gateway's errors, each with its HTTP status, gRPC code and OpenAI error type."""

from __future__ import annotations

from enum import Enum

import grpc


class ErrorKind(Enum):
    INVALID = (400, grpc.StatusCode.INVALID_ARGUMENT, "invalid_request_error")
    UNAUTHORIZED = (401, grpc.StatusCode.UNAUTHENTICATED, "authentication_error")
    TOO_LARGE = (413, grpc.StatusCode.RESOURCE_EXHAUSTED, "invalid_request_error")
    OVERLOADED = (429, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limit_error")
    FAILED = (500, grpc.StatusCode.INTERNAL, "server_error")
    UNAVAILABLE = (503, grpc.StatusCode.UNAVAILABLE, "service_unavailable")

    @property
    def http_status(self) -> int:
        return self.value[0]

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return self.value[1]

    @property
    def openai_type(self) -> str:
        return self.value[2]


class GatewayError(Exception):
    """A request the gateway refuses or could not serve; `retry_after_s` is set for overload."""

    def __init__(self, kind: ErrorKind, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s


def invalid(message: str) -> GatewayError:
    return GatewayError(ErrorKind.INVALID, message)
