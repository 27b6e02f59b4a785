"""A request as the predictor sees it: the chat's messages with their roles.

A plain-text prompt is a chat of one user message. The predictor reads a chat's structure (the
last user turn, the system prompt, how long the earlier assistant replies were), never a
template-rendered string, which mixes the turns and grows with the history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")
# Names other formats use for the same roles (ShareGPT's "human"/"gpt", tool-style names).
_ROLE_ALIASES = {
    "human": "user", "user": "user", "prompter": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bard": "assistant", "bing": "assistant",
    "assistant": "assistant", "model": "assistant", "bot": "assistant",
    "system": "system", "developer": "system",
}


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # one of ROLES
    content: str


Chat = tuple[Message, ...]
Request = str | Sequence[Message] | Sequence[dict]  # what predictions accept


def normalise_role(role: str) -> str | None:
    """The role a format's name stands for, or None for roles the predictor ignores (tools)."""
    return _ROLE_ALIASES.get(role.strip().lower())


def as_chat(request: Request) -> Chat:
    """A chat from a prompt string, Messages, or {role, content} dicts (OpenAI style)."""
    if isinstance(request, str):
        return (Message("user", request),)
    out = []
    for m in request:
        role, content = (m.role, m.content) if isinstance(m, Message) else (m["role"], m.get("content") or "")
        if (norm := normalise_role(role)) is not None:
            out.append(Message(norm, content))
    return tuple(out)


def render(chat: Chat) -> str:
    """The chat as plain text (turns separated by blank lines): what a completion API is sent,
    and what token counts are taken of when the caller does not give them."""
    if len(chat) == 1:
        return chat[0].content
    return "\n\n".join(m.content for m in chat)


def conversation_key(chat: Chat) -> str:
    """What identifies a conversation for splitting: its first user turn, normalised. Every turn
    of one conversation, and every model's answer to one instruction, share it."""
    first = next((m.content for m in chat if m.role == "user"), chat[0].content if chat else "")
    return first.strip().lower()


def prompt_key(chat_or_text: Chat | str) -> int:
    """32-bit fingerprint of a conversation, to remember which ones a model has seen."""
    key = conversation_key(as_chat(chat_or_text) if isinstance(chat_or_text, str) else chat_or_text)
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little")
