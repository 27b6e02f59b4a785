"""Prompt text of a given token count, for traces that record lengths but no text.

The prompt is the request's index followed by the word " hello" repeated: " hello" is one token
in the GPT-2, Llama and DeepSeek BPE vocabularies, so n words are about n tokens without knowing
the server's tokenizer. The leading index makes every prompt differ from its first token, so a
server with prefix caching cannot skip the prefill of one request because another sent the same
text. Given the served model's tokenizer, the count is made as exact as the tokenizer allows:
exact where the filler is one token, within one filler word otherwise.
"""

from __future__ import annotations

from ecoserve.predictor.tokenizer import TokenCounter

FILLER = " hello"


def synthetic_prompt(index: int, tokens: int, counter: TokenCounter | None = None) -> str:
    """About `tokens` tokens of text (exactly, by `counter`, where the index alone fits)."""
    head = str(index)
    words = max(tokens - 1, 0)
    if counter is not None:
        # Scale by what one filler word costs in this tokenizer (one token in the common BPE
        # vocabularies, several in a small one), then correct for merges at the edges.
        per_word = max(counter.count(FILLER * 64) / 64, 1.0)
        words = max(round((tokens - counter.count(head)) / per_word), 0)
        for _ in range(4):
            step = int((tokens - counter.count(head + FILLER * words)) / per_word)
            if step == 0 or words + step < 0:
                break
            words += step
    return head + FILLER * words
