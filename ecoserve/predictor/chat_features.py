"""Features of a chat request: the last user turn's text features plus the conversation's shape.

The reply answers the last user turn, so its text is what the text features read; the rest of the
chat enters through sizes: how many turns, how long the earlier assistant replies were (a model
that answered at length tends to go on doing so), the previous user turn, the system prompt.

Work is bounded whatever the history: the last user turn is read through a window of its first
WINDOW_HEAD and last WINDOW_TAIL characters (where instructions sit in a pasted text), earlier
messages only through len(), and only the last HISTORY_MESSAGES of them. An 8k-character
conversation costs about what a 2.5k-character prompt does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ecoserve.predictor.chat import Chat
from ecoserve.predictor.features import FeatureConfig, FeatureExtractor, PromptFeatures

WINDOW_HEAD = 1500
WINDOW_TAIL = 500
HISTORY_MESSAGES = 64

CHAT_SCALARS = (
    "messages",
    "user_turns",
    "assistant_turns",
    "log_last_turn_chars",
    "log_history_chars",
    "log_last_reply_chars",
    "log_mean_reply_chars",
    "log_max_reply_chars",
    "log_previous_user_chars",
    "log_system_chars",
)


def window(text: str) -> str:
    """The part of a long turn the text features read: its head and its tail."""
    if len(text) <= WINDOW_HEAD + WINDOW_TAIL:
        return text
    return text[:WINDOW_HEAD] + "\n" + text[-WINDOW_TAIL:]


@dataclass(frozen=True, slots=True)
class ChatParts:
    """What the features need of one chat, taken in one bounded pass."""

    last_turn: str  # windowed
    scalars: list[float]


def chat_parts(chat: Chat) -> ChatParts:
    last = len(chat) - 1
    while last > 0 and chat[last].role != "user":
        last -= 1
    turn = chat[last].content if chat else ""
    recent = chat[max(0, last - HISTORY_MESSAGES):last]
    replies = [len(m.content) for m in recent if m.role == "assistant"]
    previous_user = next((len(m.content) for m in reversed(recent) if m.role == "user"), 0)
    system = sum(len(m.content) for m in recent if m.role == "system")
    user_turns = sum(1 for m in chat if m.role == "user")
    log = math.log1p
    return ChatParts(
        last_turn=window(turn),
        scalars=[
            float(len(chat)),
            float(user_turns),
            float(len(chat) - user_turns - sum(1 for m in chat if m.role == "system")),
            log(len(turn)),
            log(sum(len(m.content) for m in recent)),
            log(replies[-1]) if replies else math.nan,
            log(sum(replies) / len(replies)) if replies else math.nan,
            log(max(replies)) if replies else math.nan,
            log(previous_user) if previous_user else math.nan,
            log(system) if system else math.nan,
        ],
    )


def chat_feature_names(config: FeatureConfig) -> list[str]:
    return config.names + list(CHAT_SCALARS)


class ChatFeatureExtractor:
    """(chat, prompt tokens, max_tokens) -> dense features and the last turn's n-gram slots."""

    def __init__(self, config: FeatureConfig = FeatureConfig()) -> None:
        self.text = FeatureExtractor(config)

    def extract(
        self, chats: list[Chat], n_tokens: list[int], max_tokens: list[int | None]
    ) -> PromptFeatures:
        parts = [chat_parts(c) for c in chats]
        f = self.text.extract([p.last_turn for p in parts], n_tokens, max_tokens)
        extra = np.asarray([p.scalars for p in parts], dtype=np.float32).reshape(len(parts), len(CHAT_SCALARS))
        return PromptFeatures(dense=np.hstack([f.dense, extra]), ngrams=f.ngrams)
