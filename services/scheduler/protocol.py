"""Turning wire bytes into messages, and checking them, without letting a bad peer crash a handler."""

from __future__ import annotations

import re
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


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_BLOCK_SIZE = 1024


def check_hello(hello: Any) -> None:
    """A worker's hello, or ProtocolError(INVALID_ARGUMENT) saying which field is wrong.

    The name becomes a Redis key (`...:ledger:{<name>}:meta`): braces or colons in it would break
    the key layout or another worker's namespace, so it is kept to a plain identifier.
    """
    problems = []
    if not _NAME.fullmatch(hello.name):
        problems.append(f"name {hello.name!r} must be 1-64 letters, digits, '.', '_' or '-', starting "
                        "with a letter or digit")
    if hello.capacity_blocks <= 0:
        problems.append("capacity_blocks must be > 0")
    if not 1 <= hello.block_size <= MAX_BLOCK_SIZE:
        problems.append(f"block_size must be in [1, {MAX_BLOCK_SIZE}], got {hello.block_size}")
    for field in ("model", "engine"):
        if len(getattr(hello, field)) > 256:
            problems.append(f"{field} is longer than 256 characters")
    if problems:
        raise ProtocolError(grpc.StatusCode.INVALID_ARGUMENT, "bad hello: " + "; ".join(problems))
