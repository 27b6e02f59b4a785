"""Prompt features for the response-length model.

Everything here is a pure function of the prompt text, its token count and max_tokens, so the
same prompt gives the same vector in every process (hashing uses crc32, never Python's salted
hash()). Dense groups: sizes (tokens, chars, words, lines), max_tokens, instruction-type cues,
lengths the prompt asks for ("in 3 sentences", "a 500-word essay"), formatting cues, and hashed
counts of words, word bigrams and the three opening words (where an instruction's verb is).
The same n-gram hashes, unfolded to PRIOR_DIM slots, feed the linear text prior (text_prior.py).

Cues are matched on word sets and substrings rather than one regex per cue: with ~80-character
prompts a regex pass per cue cost more than the tokenizer.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass

import numpy as np

PRIOR_DIM = 1 << 16  # hash slots of the text prior; the dense buckets are these slots folded

_WORD = re.compile(r"[a-z0-9']+")
_MATH = re.compile(r"\d\s*[-+*/^x=]\s*\d")


@dataclass(frozen=True)
class Cue:
    """An instruction-type cue: any of these words, phrases, substrings or opening words."""

    words: frozenset[str] = frozenset()
    phrases: tuple[str, ...] = ()  # matched on " word word " with single spaces
    substrings: tuple[str, ...] = ()  # matched on the lower-cased raw text
    openers: frozenset[str] = frozenset()  # first word of the prompt
    pattern: re.Pattern[str] | None = None


def _ws(text: str) -> frozenset[str]:
    return frozenset(text.split())


CUES: dict[str, Cue] = {
    "question": Cue(
        substrings=("?",),
        openers=_ws("who what when where why how which is are do does can could should would will"),
    ),
    "list": Cue(_ws("list lists enumerate brainstorm examples ideas tips ways reasons steps"), (" top ",)),
    "code": Cue(
        _ws("code function python javascript java sql program script algorithm html css regex json "
            "class method api"),
        substrings=("```", "c++", "def ", "()"),
    ),
    "summarize": Cue(_ws("tl dr tldr"), (" main points ", " key points ", " main idea "), ("summar",)),
    "translate": Cue(substrings=("translat",)),
    "rewrite": Cue(
        _ws("rewrite rephrase paraphrase edit correct improve revise shorten simplify"),
        (" passive voice ", " active voice "),
    ),
    "explain": Cue(_ws("explain describe discuss elaborate why compare contrast analyze analyse")),
    "classify": Cue(
        _ws("classify categorize categorise identify determine sentiment detect label"), (" which of ",)
    ),
    "short_answer": Cue(
        _ws("briefly short concise"),
        (" yes or no ", " true or false ", " one word ", " single word ", " in a word ",
         " one sentence ", " name a ", " name an ", " name one ", " name the "),
    ),
    "long_form": Cue(
        _ws("essay story article blog letter email speech report detailed poem plan guide "
            "comprehensive proposal tutorial")
    ),
    "create": Cue(
        openers=_ws("write create generate compose design develop draft construct make produce invent come")
    ),
    "math": Cue(_ws("calculate compute solve equation sum product multiply divide"), pattern=_MATH),
    "extract": Cue(
        _ws("extract find given"),
        (" from the text ", " from the passage ", " from the paragraph ", " from the article "),
    ),
    "opinion": Cue(_ws("opinion think best favorite favourite recommend"), (" should i ",)),
    "chat": Cue(
        _ws("please"), (" i want ", " i need ", " can you ", " act as ", " you are "),
        openers=_ws("hi hello hey"),
    ),
}

_NUMBER_WORDS = {
    w: float(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_UNIT = {"word": 0, "words": 0, "sentence": 1, "sentences": 1, "paragraph": 2, "paragraphs": 2}
ASKED = ("asked_words", "asked_sentences", "asked_paragraphs", "asked_items")

FORMATTING = (
    "newlines",
    "blank_lines",
    "bullet_lines",
    "numbered_lines",
    "code_fences",
    "quotes",
    "urls",
    "colons",
    "digit_frac",
    "upper_frac",
    "non_ascii_frac",
    "body_chars",  # characters after the first line: the "input" an instruction works on
)
SIZES = ("log_tokens", "tokens", "chars", "words", "lines", "mean_word_len", "first_line_words")
MAX_TOKENS = ("max_tokens", "log_max_tokens")
N_SCALAR = len(SIZES) + len(MAX_TOKENS) + len(CUES) + len(ASKED) + len(FORMATTING)


@dataclass(frozen=True)
class FeatureConfig:
    """Sizes of the hashed blocks; stored with a model so it rebuilds the same vectors."""

    word_buckets: int = 256
    bigram_buckets: int = 256
    lead_buckets: int = 64

    @property
    def names(self) -> list[str]:
        return (
            list(SIZES)
            + list(MAX_TOKENS)
            + [f"cue_{k}" for k in CUES]
            + list(ASKED)
            + list(FORMATTING)
            + [f"w{i}" for i in range(self.word_buckets)]
            + [f"b{i}" for i in range(self.bigram_buckets)]
            + [f"lead{i}" for i in range(self.lead_buckets)]
        )

    @property
    def dim(self) -> int:
        return N_SCALAR + self.word_buckets + self.bigram_buckets + self.lead_buckets


_Tables = tuple[
    dict[str, int],
    dict[str, int],
    dict[str, list[tuple[str, int]]],
    list[tuple[str, int]],
    list[tuple[re.Pattern[str], int]],
]


def _cue_tables() -> _Tables:
    """CUES flattened to bit masks, so a prompt is matched in one pass per kind of test.

    Phrases are indexed by their first word: only phrases whose first word occurs are searched.
    """
    words: dict[str, int] = {}
    openers: dict[str, int] = {}
    phrases: dict[str, list[tuple[str, int]]] = {}
    subs: list[tuple[str, int]] = []
    patterns: list[tuple[re.Pattern[str], int]] = []
    for i, c in enumerate(CUES.values()):
        bit = 1 << i
        for w in c.words:
            words[w] = words.get(w, 0) | bit
        for w in c.openers:
            openers[w] = openers.get(w, 0) | bit
        for p in c.phrases:
            phrases.setdefault(p.split()[0], []).append((p, bit))
        subs += [(s, bit) for s in c.substrings]
        if c.pattern is not None:
            patterns.append((c.pattern, bit))
    return words, openers, phrases, subs, patterns


_CUE_WORDS, _CUE_OPENERS, _CUE_PHRASES, _CUE_SUBSTRINGS, _CUE_PATTERNS = _cue_tables()


def _cue_mask(low: str, words: list[str], wordset: set[str]) -> int:
    mask = _CUE_OPENERS.get(words[0], 0) if words else 0
    get = _CUE_WORDS.get
    for w in wordset:
        mask |= get(w, 0)
    starts = wordset & _CUE_PHRASES.keys()
    if starts:
        joined = " " + " ".join(words) + " "
        for w in starts:
            for p, bit in _CUE_PHRASES[w]:
                if p in joined:
                    mask |= bit
    for s, bit in _CUE_SUBSTRINGS:
        if s in low:
            mask |= bit
    for pat, bit in _CUE_PATTERNS:
        if pat.search(low):
            mask |= bit
    return mask


def _asked(words: list[str], wordset: set[str], has_digit: bool) -> list[float]:
    """Largest count the prompt asks for, per unit (words, sentences, paragraphs, other items)."""
    best = [math.nan] * 4
    if not has_digit and wordset.isdisjoint(_NUMBER_WORDS):
        return best
    for i, w in enumerate(words):
        n = float(w) if w.isdigit() and len(w) < 6 else _NUMBER_WORDS.get(w)
        if n is None:
            continue
        for nxt in words[i + 1 : i + 3]:
            unit = _UNIT.get(nxt, 3 if nxt.endswith("s") and n <= 100 else -1)
            if unit >= 0:
                if not best[unit] >= n:  # NaN-safe max
                    best[unit] = n
                break
    return best


@dataclass(frozen=True)
class PromptFeatures:
    """Features of a batch: the dense matrix and, per prompt, the prior slots of its n-grams."""

    dense: np.ndarray  # float32 (n, config.dim)
    ngrams: list[list[int]]  # one slot (< PRIOR_DIM) per word, bigram and opening word


def _scalars(prompt: str, low: str, words: list[str], n_tokens: int, max_tokens: int | None) -> list[float]:
    lines = prompt.split("\n")
    n_chars = max(len(prompt), 1)
    stripped = [ln.strip() for ln in lines]
    wordset = set(words)
    mask = _cue_mask(low, words, wordset)
    digits = sum(map(prompt.count, "0123456789"))
    return [
        math.log1p(n_tokens),
        float(n_tokens),
        float(len(prompt)),
        float(len(words)),
        float(len(lines)),
        (sum(map(len, words)) / len(words)) if words else 0.0,
        float(len(lines[0].split())),
        float(max_tokens) if max_tokens is not None else math.nan,
        math.log1p(max_tokens) if max_tokens is not None else math.nan,
        *[float((mask >> i) & 1) for i in range(len(CUES))],
        *_asked(words, wordset, digits > 0),
        float(len(lines) - 1),
        float(stripped.count("")),
        float(sum(1 for s in stripped if s[:1] in ("-", "*", "•"))),
        float(sum(1 for s in stripped if s[:1].isdigit() and s.lstrip("0123456789")[:1] in (".", ")"))),
        float(prompt.count("```")),
        float(prompt.count('"')),
        float(low.count("http")),
        float(prompt.count(":")),
        digits / n_chars,
        sum(map(str.isupper, prompt)) / n_chars,
        (len(prompt.encode("utf-8")) - len(prompt)) / n_chars,
        float(len(prompt) - len(lines[0])),
    ]


class FeatureExtractor:
    """Turns (prompt, token count, max_tokens) into features; stateless apart from its config."""

    def __init__(self, config: FeatureConfig = FeatureConfig()) -> None:
        self.config = config

    def extract(
        self, prompts: list[str], n_tokens: list[int], max_tokens: list[int | None]
    ) -> PromptFeatures:
        c = self.config
        dense = np.zeros((len(prompts), c.dim), dtype=np.float32)
        w0, b0 = N_SCALAR, N_SCALAR + c.word_buckets
        l0 = b0 + c.bigram_buckets
        crc = zlib.crc32
        flat: list[int] = []
        ngrams: list[list[int]] = []
        scalars: list[list[float]] = []
        for i, (prompt, n, m) in enumerate(zip(prompts, n_tokens, max_tokens)):
            low = prompt.lower()
            words = _WORD.findall(low)
            scalars.append(_scalars(prompt, low, words, n, m))
            wb = [w.encode() for w in words]
            wh = [crc(b) for b in wb]
            bh = [crc(b" " + b, h) for h, b in zip(wh, wb[1:])]  # crc of "first second"
            lh = [crc(b, 2 + j) for j, b in enumerate(wb[:3])]  # seed = position
            base = i * c.dim
            flat += [base + w0 + h % c.word_buckets for h in wh]
            flat += [base + b0 + h % c.bigram_buckets for h in bh]
            flat += [base + l0 + h % c.lead_buckets for h in lh]
            ngrams.append([h % PRIOR_DIM for h in wh + bh + lh])
        if flat:
            counts = np.bincount(np.asarray(flat, dtype=np.intp), minlength=dense.size)
            dense += counts.reshape(dense.shape)
        if scalars:
            dense[:, :N_SCALAR] = scalars
        return PromptFeatures(dense=dense, ngrams=ngrams)
