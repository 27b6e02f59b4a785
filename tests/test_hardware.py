import dataclasses

import pytest

from ecoserve.core.hardware import (
    GIB,
    GPUS,
    MODELS,
    RESERVE_BYTES_PER_GPU,
    get_gpu,
    get_model,
    kv_bytes_per_token,
    kv_capacity_blocks,
)


def test_registries_have_the_named_specs():
    assert set(MODELS) == {"llama-2-7b", "llama-3-8b", "llama-3.1-8b", "llama-2-70b"}
    assert set(GPUS) == {"a100-40gb", "a100-80gb", "h100-80gb"}
    assert get_gpu("a100-40gb").profile == get_gpu("a100-80gb").profile == "a100"
    assert get_gpu("h100-80gb").profile == "h100"
    for m in MODELS.values():
        assert m.n_q_heads * m.head_dim == m.hidden


@pytest.mark.parametrize("lookup, name", [(get_model, "llama-2-13b"), (get_gpu, "a40")])
def test_unknown_names_list_the_valid_ones(lookup, name):
    with pytest.raises(ValueError, match="valid:.*llama-2-7b|valid:.*a100-40gb"):
        lookup(name)


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model("llama-2-7b").n_layers = 1


def test_kv_bytes_per_token_by_hand():
    # K and V, 32 layers, 32 heads of 128 fp16 values: 512 KiB per token.
    assert kv_bytes_per_token(get_model("llama-2-7b")) == 2 * 32 * 32 * 128 * 2 == 512 * 1024
    # GQA: 8 KV heads, a quarter of that.
    assert kv_bytes_per_token(get_model("llama-3-8b")) == 128 * 1024
    assert kv_bytes_per_token(get_model("llama-2-70b")) == 2 * 80 * 8 * 128 * 2


def test_llama_2_7b_on_a100_40gb_by_hand():
    budget = 40 * GIB * 0.9  # nvidia-smi reports 40960 MiB
    weights = 6_738_415_616 * 2
    block = 2 * 32 * 32 * 128 * 2 * 16
    expected = int((budget - weights - 1.5 * GIB) // block)
    blocks = kv_capacity_blocks(get_model("llama-2-7b"), get_gpu("a100-40gb"))
    assert blocks == expected
    # ~45k tokens: vLLM reports a few thousand 16-token blocks for this pair.
    assert 2000 <= blocks <= 3500


def test_capacity_grows_with_memory_and_fraction_and_tp():
    m = get_model("llama-2-7b")
    small, big = get_gpu("a100-40gb"), get_gpu("a100-80gb")
    assert kv_capacity_blocks(m, big) > 2 * kv_capacity_blocks(m, small)
    assert kv_capacity_blocks(m, small, mem_fraction=0.95) > kv_capacity_blocks(m, small)
    assert kv_capacity_blocks(m, small, tp=2) > 2 * kv_capacity_blocks(m, small)
    assert kv_capacity_blocks(m, small, block_size=32) == kv_capacity_blocks(m, small, block_size=16) // 2


def test_reserve_is_per_gpu():
    m, g = get_model("llama-2-70b"), get_gpu("a100-80gb")
    free = 4 * g.memory_bytes * 0.9 - m.weight_bytes - 4 * RESERVE_BYTES_PER_GPU
    assert kv_capacity_blocks(m, g, tp=4) == int(free // (kv_bytes_per_token(m) * 16))


@pytest.mark.parametrize("gpu, tp", [("a100-80gb", 1), ("h100-80gb", 1), ("a100-40gb", 2)])
def test_llama_2_70b_does_not_fit(gpu, tp):
    with pytest.raises(ValueError, match="does not fit"):
        kv_capacity_blocks(get_model("llama-2-70b"), get_gpu(gpu), tp=tp)


@pytest.mark.parametrize(
    "kwargs", [{"tp": 0}, {"tp": 3}, {"tp": 16}, {"block_size": 0}, {"mem_fraction": 0.0}, {"mem_fraction": 1.5}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        kv_capacity_blocks(get_model("llama-3-8b"), get_gpu("a100-80gb"), **kwargs)
