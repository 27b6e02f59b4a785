"""Multi-turn conversations: turn k's prompt is the whole history (earlier turns and their
replies) plus a new user turn, so each turn repeats the previous one's prompt and reply as its
prefix, the traffic a chat service sees.

Turn lengths come from MT-bench (data/mt_bench_turn_lengths.csv.gz: the GPT-2 token counts of 80
two-turn conversations answered by three models, NOTICE.md): a conversation draws one of them for
its first two turns and further turns from the second turns. The number of turns is geometric
with mean `mean_turns`; conversations start with Gamma(burstiness) gaps at rate / mean_turns, and
a user sends the next turn an exponential think time (mean `think_time`) after the previous one.
The first turns of a sample come slower while conversations ramp up, so its gaps are scaled to
make its mean rate the one asked for (as timed traces are).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from dataclasses import dataclass, replace
from importlib import resources

import numpy as np

from ecoserve.workload.arrivals import gamma_arrivals, rescale
from ecoserve.workload.prefix import conversation_hashes
from ecoserve.workload.spec import RequestSpec

NAME = "multi-turn"


@dataclass(frozen=True, slots=True)
class TurnLengths:
    first: np.ndarray  # [conversation, (user tokens, reply tokens)] of first turns
    later: np.ndarray  # the same for second turns


@functools.cache
def turn_lengths() -> TurnLengths:
    resource = resources.files("ecoserve.workload") / "data" / "mt_bench_turn_lengths.csv.gz"
    with resource.open("rb") as raw, gzip.open(raw, "rt", newline="") as text:
        rows = list(csv.DictReader(io.StringIO(text.read())))
    pairs: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
    for r in rows:
        pairs.setdefault((r["model"], r["question_id"]), {})[int(r["turn"])] = (
            int(r["user_tokens"]), int(r["answer_tokens"])
        )
    first = np.array([p[1] for p in pairs.values()], dtype=np.int64)
    later = np.array([p[2] for p in pairs.values()], dtype=np.int64)
    return TurnLengths(first, later)


def multi_turn(
    num_requests: int, rate: float, seed: int | np.random.SeedSequence = 0, burstiness: float = 1.0, mean_turns: float = 4.0,
    think_time: float = 30.0,
) -> list[RequestSpec]:
    """`num_requests` turns of conversations arriving at about `rate` turns per second."""
    if mean_turns < 1 or think_time <= 0:
        raise ValueError("mean_turns must be >= 1 and think_time > 0")
    rng = np.random.default_rng(seed)
    lengths = turn_lengths()
    # Enough conversations for num_requests turns; their starts, then their turns.
    count = int(np.ceil(num_requests / mean_turns * 1.5)) + 8
    starts = gamma_arrivals(count, rate / mean_turns, burstiness, rng)
    specs: list[RequestSpec] = []
    for conv, start in enumerate(starts.tolist()):
        turns = int(rng.geometric(1.0 / mean_turns))
        pick = int(rng.integers(len(lengths.first)))
        history, arrival = 0, start
        for k in range(turns):
            if k == 0:
                user, reply = lengths.first[pick]
            elif k == 1:
                user, reply = lengths.later[pick]
            else:
                user, reply = lengths.later[int(rng.integers(len(lengths.later)))]
            prompt = history + int(user)
            specs.append(RequestSpec(arrival, prompt, int(reply), block_hashes=conversation_hashes(conv, prompt + int(reply))))
            history = prompt + int(reply)
            arrival += float(rng.exponential(think_time))
    specs.sort(key=lambda s: s.arrival)
    if len(specs) < num_requests:
        raise ValueError(f"generated {len(specs)} turns, fewer than the {num_requests} asked for")
    specs = specs[:num_requests]
    if len(specs) > 1:  # the first turns come slower while conversations ramp up: hit the rate asked for
        arrival = rescale(np.array([s.arrival for s in specs]), rate)
        specs = [replace(s, arrival=float(a)) for s, a in zip(specs, arrival)]
    return specs
