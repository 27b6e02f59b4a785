"""Turning wire bytes into messages without letting a bad peer crash a handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError


@dataclass(frozen=True, slots=True)
class Malformed:
    """Bytes that did not parse; the handler answers INVALID_ARGUMENT instead of a generic error."""

    error: str


class ProtocolError(Exception):
    """A peer broke the protocol: the call ends with `code` and this message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def lenient(message_cls: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_cls.FromString(data)
        except DecodeError as exc:
            return Malformed(f"malformed {message_cls.DESCRIPTOR.full_name}: {exc}")

    return parse


def require(message: Any, cls: Any) -> Any:
    """The message itself, or a ProtocolError if it did not parse."""
    if isinstance(message, Malformed):
        raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, message.error)
    assert isinstance(message, cls)
    return message
