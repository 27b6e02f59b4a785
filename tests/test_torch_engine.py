"""The torch engine against transformers' LlamaForCausalLM, on tiny random models (CPU, float32)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ecoserve.engine.torch import (  # noqa: E402
    BlockAllocator,
    LlamaConfig,
    OutOfBlocksError,
    SamplingParams,
    StepItem,
    TorchEngine,
    load_tokenizer,
    save_random_model,
)
from ecoserve.engine.torch.attention import SequenceSlice, build_batch  # noqa: E402
from ecoserve.engine.torch.kv_cache import KVCache  # noqa: E402
from ecoserve.engine.torch.sampler import filter_logits  # noqa: E402

GREEDY = SamplingParams(temperature=0.0, max_tokens=12)
HF_SHAPES = {
    # grouped-query attention, default rope
    "gqa": dict(num_attention_heads=4, num_key_value_heads=2),
    # Llama 3.1 style: rope_theta 500000 with llama3 frequency scaling
    "llama3": dict(
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=256,
        rope_parameters=dict(
            rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=64,
        ),
    ),
    # plain multi-head attention, embeddings tied to the LM head
    "tied": dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True),
}


def make_hf_model(out_dir: Path, seed: int = 0, **overrides: object) -> object:
    """A tiny random LlamaForCausalLM saved to out_dir as safetensors."""
    kwargs = dict(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, max_position_embeddings=512,
        bos_token_id=1, eos_token_id=2,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs)).eval()
    model.save_pretrained(out_dir)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add overhead, and hurt on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(HF_SHAPES))
def hf_pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    out = tmp_path_factory.mktemp(request.param)
    return make_hf_model(out, **HF_SHAPES[request.param]), out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gqa-main")
    make_hf_model(out, seed=1)
    return out


@pytest.fixture(scope="module")
def engine_factory(model_dir: Path):
    def make(num_blocks: int = 64, block_size: int = 4, path: Path = model_dir) -> TorchEngine:
        return TorchEngine(path, device="cpu", num_blocks=num_blocks, block_size=block_size)

    return make


def prompt(n: int, offset: int = 0) -> list[int]:
    return [(7 * i + 3 + offset) % 250 + 10 for i in range(n)]


@dataclass
class Req:
    """A request as the scheduler sees it: its sequence and how much of it is cached."""

    tokens: list[int]
    params: SamplingParams
    arrival: int = 0
    cached: int = 0
    generated: list[int] = field(default_factory=list)
    finish_reason: str | None = None


def drive(
    engine: TorchEngine,
    reqs: dict[int, Req],
    chunk: int = 10_000,
    preempt: dict[int, int] | None = None,
) -> dict[int, Req]:
    """A minimal scheduler: every step, each live request computes its next chunk (or decodes)."""
    preempt = dict(preempt or {})
    step = 0
    while any(r.finish_reason is None for r in reqs.values()):
        for rid, at in list(preempt.items()):
            if step == at:
                engine.reset(rid)
                reqs[rid].cached = 0
                del preempt[rid]
        items = []
        for rid, r in reqs.items():
            if r.finish_reason is None and r.arrival <= step:
                end = min(len(r.tokens), r.cached + chunk)
                items.append(StepItem(rid, r.tokens[r.cached : end], r.cached, end == len(r.tokens), r.params))
        outputs, timing = engine.step(items)
        assert timing.forward_s >= 0 and timing.sample_s >= 0
        for it, out in zip(items, outputs, strict=True):
            r = reqs[out.request_id]
            r.cached = it.start_pos + len(it.token_ids)
            if out.token_id is not None:
                r.tokens.append(out.token_id)
                r.generated.append(out.token_id)
            if out.finished:
                r.finish_reason = out.finish_reason
                engine.release(out.request_id)
        step += 1
    return reqs


def generate(engine: TorchEngine, tokens: list[int], params: SamplingParams = GREEDY, **kw: object) -> Req:
    return drive(engine, {0: Req(list(tokens), params)}, **kw)[0]


def paged_logits(engine: TorchEngine, tokens: list[int], chunk: int) -> torch.Tensor:
    """All-position logits of one sequence computed in chunks through the paged cache."""
    cfg = engine.config
    kv = KVCache.allocate(cfg, 32, 4, engine.device, engine.dtype)
    alloc = BlockAllocator(32, 4)
    rows = []
    with torch.inference_mode():
        for start in range(0, len(tokens), chunk):
            part = tokens[start : start + chunk]
            alloc.grow({0: start + len(part)})
            batch = build_batch([SequenceSlice(alloc.table(0), start, len(part))], 4, engine.device)
            rows.append(engine.model.logits(engine.model(torch.tensor(part), kv, batch)))
    return torch.cat(rows)


# --- model correctness against transformers -----------------------------------------------------


@pytest.mark.parametrize("chunk", [100, 5, 1])
def test_logits_match_hf(hf_pair: tuple[object, Path], chunk: int) -> None:
    hf, path = hf_pair
    engine = TorchEngine(path, num_blocks=8, block_size=4)
    tokens = prompt(23)
    with torch.no_grad():
        expected = hf(torch.tensor([tokens])).logits[0]
    torch.testing.assert_close(paged_logits(engine, tokens, chunk), expected, atol=1e-4, rtol=1e-4)


def test_config_from_hf_dir(hf_pair: tuple[object, Path]) -> None:
    hf, path = hf_pair
    cfg = LlamaConfig.from_dir(path)
    hc = hf.config
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (
        hc.num_attention_heads, hc.num_key_value_heads, hc.hidden_size // hc.num_attention_heads,
    )
    assert cfg.tie_word_embeddings == hc.tie_word_embeddings
    assert cfg.rope_theta == hc.rope_parameters["rope_theta"]
    assert 2 in cfg.eos_token_ids


def test_greedy_matches_hf_generate(hf_pair: tuple[object, Path]) -> None:
    hf, path = hf_pair
    engine = TorchEngine(path, num_blocks=16, block_size=4)
    for offset in (0, 11):
        tokens = prompt(9, offset)
        with torch.no_grad():
            ref = hf.generate(torch.tensor([tokens]), max_new_tokens=12, do_sample=False, pad_token_id=0)
        assert generate(engine, tokens).generated == ref[0, len(tokens) :].tolist()


def test_sharded_checkpoint_loads(tmp_path: Path) -> None:
    hf = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)
    ).eval()
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    engine = TorchEngine(tmp_path, num_blocks=8, block_size=4)
    with torch.no_grad():
        expected = hf(torch.tensor([prompt(7)])).logits[0]
    torch.testing.assert_close(paged_logits(engine, prompt(7), 3), expected, atol=1e-4, rtol=1e-4)


def test_random_model_roundtrips_through_hf(tmp_path: Path) -> None:
    cfg = LlamaConfig.tiny(tie_word_embeddings=True)
    save_random_model(cfg, tmp_path, seed=3)
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer is not None and tokenizer.get_vocab_size() == cfg.vocab_size
    ids = tokenizer.encode("héllo, paged KV").ids
    assert tokenizer.decode(ids) == "héllo, paged KV"
    assert tokenizer.token_to_id("<|end_of_text|>") == cfg.eos_token_ids[0]
    engine = TorchEngine(tmp_path, num_blocks=8, block_size=4)
    assert engine.config == cfg
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = hf(torch.tensor([ids])).logits[0]
    torch.testing.assert_close(paged_logits(engine, ids, 4), expected, atol=1e-4, rtol=1e-4)


# --- batching, chunking, preemption -------------------------------------------------------------


@pytest.mark.parametrize("chunk", [5, 4, 1])
def test_chunked_prefill_equals_whole(engine_factory, chunk: int) -> None:
    engine = engine_factory()
    whole = generate(engine, prompt(21)).generated
    assert generate(engine, prompt(21), chunk=chunk).generated == whole
    assert engine.num_free_blocks == engine.num_blocks


def test_mixed_batch_equals_alone(engine_factory) -> None:
    engine = engine_factory()
    seeded = SamplingParams(temperature=0.8, top_p=0.9, top_k=50, seed=7, max_tokens=10)
    specs = {
        1: (prompt(17), GREEDY, 0),
        2: (prompt(3, 5), seeded, 0),
        3: (prompt(30, 9), GREEDY, 2),
        4: (prompt(8, 2), seeded, 5),
    }
    alone = {rid: generate(engine, toks, params).generated for rid, (toks, params, _) in specs.items()}
    batch = drive(engine, {rid: Req(list(t), p, arrival=a) for rid, (t, p, a) in specs.items()}, chunk=5)
    assert {rid: r.generated for rid, r in batch.items()} == alone
    assert engine.num_free_blocks == engine.num_blocks


def test_preempted_request_recomputes_to_same_tokens(engine_factory) -> None:
    engine = engine_factory()
    params = SamplingParams(temperature=1.0, seed=11, max_tokens=15)
    plain = generate(engine, prompt(9), params).generated
    again = generate(engine, prompt(9), params, chunk=6, preempt={0: 8}).generated
    assert again == plain


# --- KV blocks ----------------------------------------------------------------------------------


def test_block_allocator_grows_frees_and_refuses() -> None:
    alloc = BlockAllocator(num_blocks=4, block_size=4)
    alloc.grow({1: 5})  # 2 blocks
    alloc.grow({1: 8, 2: 1})  # no new block for 1, one for 2
    assert len(alloc.table(1)) == 2 and len(alloc.table(2)) == 1 and alloc.num_free == 1
    with pytest.raises(OutOfBlocksError, match="needs 2 new KV blocks but only 1"):
        alloc.grow({1: 9, 2: 5})
    assert alloc.num_free == 1 and len(alloc.table(1)) == 2  # all or nothing
    alloc.free(1)
    alloc.free(1)  # idempotent
    assert alloc.num_free == 3 and alloc.table(1) == []
    alloc.grow({3: 12})
    assert sorted(alloc.table(3) + alloc.table(2)) == [0, 1, 2, 3]


def test_engine_out_of_blocks_then_release(engine_factory) -> None:
    engine = engine_factory(num_blocks=3, block_size=4)
    engine.step([StepItem(1, prompt(8), 0, True, GREEDY)])
    assert engine.num_free_blocks == 1
    with pytest.raises(OutOfBlocksError):
        engine.step([StepItem(2, prompt(9), 0, True, GREEDY)])
    assert engine.num_free_blocks == 1
    engine.release(1)
    assert engine.num_free_blocks == 3
    engine.step([StepItem(2, prompt(9), 0, True, GREEDY)])


def test_num_blocks_from_memory_budget(model_dir: Path) -> None:
    cfg = LlamaConfig.from_dir(model_dir)
    per_block = 2 * cfg.num_layers * 16 * cfg.num_kv_heads * cfg.head_dim * 4
    engine = TorchEngine(model_dir, kv_cache_bytes=10 * per_block + 1)
    assert (engine.num_blocks, engine.block_size) == (10, 16)
    assert engine.kv.k[0].shape == (10, 16, cfg.num_kv_heads, cfg.head_dim)


def test_step_rejects_inconsistent_items(engine_factory) -> None:
    engine = engine_factory()
    with pytest.raises(ValueError, match="start_pos 3"):
        engine.step([StepItem(1, prompt(4), 3, True, GREEDY)])
    with pytest.raises(ValueError, match="twice"):
        engine.step([StepItem(1, [5], 0, False, GREEDY), StepItem(1, [6], 0, False, GREEDY)])
    with pytest.raises(ValueError, match="outside vocab"):
        engine.step([StepItem(1, [5, 300], 0, True, GREEDY)])
    assert engine.num_free_blocks == engine.num_blocks


# --- sampling and stopping ----------------------------------------------------------------------


def test_seeded_sampling_is_reproducible(engine_factory) -> None:
    engine = engine_factory()

    def run(seed: int) -> list[int]:
        params = SamplingParams(temperature=1.5, top_p=0.95, seed=seed, max_tokens=20, ignore_eos=True)
        return generate(engine, prompt(6), params).generated

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_top_k_one_equals_greedy(engine_factory) -> None:
    engine = engine_factory()
    params = SamplingParams(temperature=2.0, top_k=1, seed=3, max_tokens=12)
    assert generate(engine, prompt(10), params).generated == generate(engine, prompt(10)).generated


def test_filter_logits_top_k_top_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]]))
    out = filter_logits(logits, torch.tensor([1.0, 1.0]), torch.tensor([0, 2]), torch.tensor([0.6, 1.0]))
    kept = torch.isfinite(out)
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    torch.testing.assert_close(out[kept], logits[kept])


@pytest.mark.parametrize(
    "kwargs",
    [dict(temperature=-0.1), dict(temperature=float("nan")), dict(top_p=0.0), dict(top_k=-1), dict(max_tokens=0)],
)
def test_invalid_sampling_params(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)


def test_finish_reasons(engine_factory, model_dir: Path, tmp_path: Path) -> None:
    engine = engine_factory()
    ref = generate(engine, prompt(12), SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)).generated
    stop = ref[3]
    first = ref.index(stop)

    by_length = generate(engine, prompt(12), SamplingParams(temperature=0.0, max_tokens=5, ignore_eos=True))
    assert (by_length.generated, by_length.finish_reason) == (ref[:5], "length")
    by_stop = generate(engine, prompt(12), SamplingParams(temperature=0.0, stop_token_ids=(stop,), ignore_eos=True))
    assert (by_stop.generated, by_stop.finish_reason) == (ref[: first + 1], "stop")

    # The same token as the checkpoint's EOS: stops, unless ignore_eos.
    eos_dir = tmp_path / "eos"
    shutil.copytree(model_dir, eos_dir)
    config = json.loads((eos_dir / "config.json").read_text())
    (eos_dir / "config.json").write_text(json.dumps({**config, "eos_token_id": stop}))
    (eos_dir / "generation_config.json").unlink()
    eos_engine = engine_factory(path=eos_dir)
    assert eos_engine.eos_token_ids == (stop,)
    by_eos = generate(eos_engine, prompt(12), SamplingParams(temperature=0.0, max_tokens=8))
    assert (by_eos.generated, by_eos.finish_reason) == (ref[: first + 1], "stop")
    ignored = generate(eos_engine, prompt(12), SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    assert (ignored.generated, ignored.finish_reason) == (ref, "length")


def test_finished_request_must_be_released(engine_factory) -> None:
    engine = engine_factory()
    params = SamplingParams(temperature=0.0, max_tokens=1)
    (out,), _ = engine.step([StepItem(1, prompt(5), 0, True, params)])
    assert out.finished and out.finish_reason == "length"
    with pytest.raises(ValueError, match="already finished"):
        engine.step([StepItem(1, [out.token_id], 5, True, params)])
    engine.release(1)
    assert engine.num_free_blocks == engine.num_blocks
