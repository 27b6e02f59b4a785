"""Workloads with prefix structure (Mooncake's block ids, trace files with hash_ids, multi-turn
conversations) and prefix caching in the simulated policies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ecoserve.core.policies import PolicyOptions
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.simulator import Simulator
from ecoserve.workload import load_workload, select_workload
from ecoserve.workload.prefix import conversation_hashes, expand_hash_ids, ideal_hit_rate


def test_trace_block_ids_expand_to_chained_16_token_hashes() -> None:
    a = expand_hash_ids([7, 8, 9], 512, 1300)  # 1300 tokens: 81 whole 16-token blocks
    b = expand_hash_ids([7, 8, 5], 512, 1300)
    c = expand_hash_ids([4, 8, 9], 512, 1300)
    assert len(a) == 81 and len(set(a)) == 81
    assert a[:64] == b[:64] and a[64] != b[64]  # the same first two 512-token blocks
    assert not set(a) & set(c)  # a different first block changes every hash after it
    with pytest.raises(ValueError, match="cannot cover"):
        expand_hash_ids([1], 512, 600)
    with pytest.raises(ValueError, match="whole 16-token blocks"):
        expand_hash_ids([1], 500, 400)


def test_mooncake_has_its_prefix_reuse() -> None:
    whole = select_workload("mooncake")
    assert len(whole.specs) == 3993
    assert all(len(s.block_hashes) == s.prompt_len // 16 for s in whole.specs)
    # Every block an infinite cache would hold: 65.2% at 16 tokens (SOURCES.md: 63.96% per
    # 512-token id, whose partial last blocks also count).
    assert ideal_hit_rate((s.prompt_len, s.block_hashes) for s in whole.specs) == pytest.approx(0.6516, abs=1e-3)
    assert whole.tied > 0 and whole.tie_resolution == 0.001  # millisecond stamps, some shared


def test_trace_files_carry_hash_ids(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"arrival": 0, "prompt_len": 64, "output_len": 4, "hash_ids": [1, 2], "hash_block_size": 32}\n'
        '{"arrival": 1, "prompt_len": 40, "output_len": 4, "hash_ids": [1, 3], "hash_block_size": 32}\n'
    )
    first, second = load_workload(str(path))
    assert len(first.block_hashes) == 4 and len(second.block_hashes) == 2
    assert first.block_hashes[:2] == second.block_hashes[:2]  # the shared first 32 tokens
    csv = tmp_path / "t.csv"
    csv.write_text("arrival,prompt_len,output_len,hash_ids\n0,512,4,5\n1,600,4,5 6\n")
    one, two = load_workload(str(csv))  # 512-token ids by default, as Mooncake's
    assert one.block_hashes == two.block_hashes[:32]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_len": 700, "output_len": 4, "hash_ids": [1]}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: 1 ids of 512 tokens cannot cover"):
        load_workload(str(bad), rate=1.0)


def test_multi_turn_prompts_repeat_the_history() -> None:
    specs = load_workload("multi-turn", num_requests=400, rate=2.0, seed=3)
    assert (len(specs) - 1) / specs[-1].arrival == pytest.approx(2.0)
    by_prefix = {s.block_hashes[0]: [] for s in specs if s.block_hashes}
    for s in specs:
        if s.block_hashes:
            by_prefix[s.block_hashes[0]].append(s)
    later = [turns for turns in by_prefix.values() if len(turns) > 1]
    assert later, "some conversations have several turns"
    for turns in later:
        for before, after in zip(turns, turns[1:]):
            # The next turn's prompt holds this one's prompt and reply, then a new user turn.
            assert after.prompt_len > before.prompt_len + before.output_len
            covered = (before.prompt_len + before.output_len) // 16
            assert after.block_hashes[:covered] == before.block_hashes[:covered]
    assert ideal_hit_rate((s.prompt_len, s.block_hashes) for s in specs) > 0.5
    assert conversation_hashes(1, 40) != conversation_hashes(2, 40)
    assert load_workload("multi-turn", num_requests=400, rate=2.0, seed=3) == specs  # seeded


def test_prefix_caching_reuses_the_history_and_saves_prefill() -> None:
    specs = load_workload("multi-turn", num_requests=300, rate=1.0, seed=0)
    cluster = ClusterConfig(model="llama-3-8b")
    runs = {}
    for policy, caching in (("vllm", True), ("vllm", False), ("ecoserve", True)):
        options = PolicyOptions(prefix_caching=caching)
        sim = Simulator(replace(cluster, policy=policy, options=options))
        result = sim.run(specs, "oracle")
        for worker in sim.workers:
            worker.sched.ledger.check()
        runs[(policy, caching)] = result.summary(policy, 1.0)
    on, off, eco = runs[("vllm", True)], runs[("vllm", False)], runs[("ecoserve", True)]
    assert off.prefix_queries == 0 and on.prefix_hits > 0.5 * on.prefix_queries
    assert eco.prefix_hit_rate > 0.5
    assert on.ttft_p50 < off.ttft_p50  # only the new user turn is prefilled
    assert on.completed == off.completed == 300
