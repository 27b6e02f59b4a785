"""Prompt text of a given token count, for traces that record lengths but no text.

The prompt is the request's index followed by the word " hello" repeated: " hello" is one token
in the GPT-2, Llama and DeepSeek BPE vocabularies, so n words are about n tokens without knowing
the server's tokenizer. The leading index makes every prompt differ from its first token, so a
server with prefix caching cannot skip the prefill of one request because another sent the same
text. Given the served model's tokenizer, the count is made exact.
"""

from __future__ import annotations

from ecoserve.predictor.tokenizer import TokenCounter

FILLER = " hello"


def synthetic_prompt(index: int, tokens: int, counter: TokenCounter | None = None) -> str:
    """About `tokens` tokens of text (exactly, by `counter`, where the index alone fits)."""
    head = str(index)
    words = max(tokens - 1, 0)
    if counter is not None:
        # Each filler word is one token, so one correction usually lands; a few more cover
        # tokenizers that merge the head with the first word.
        for _ in range(4):
            error = tokens - counter.count(head + FILLER * words)
            if error == 0 or words + error < 0:
                break
            words += error
    return head + FILLER * words
