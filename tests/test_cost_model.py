import importlib.util
import json
import math
import random
import sys
from importlib.resources import files
from pathlib import Path

import pytest

from ecoserve.core.cost_model import CostModel
from ecoserve.core.hardware import GPUS, get_gpu, get_model, kv_capacity_blocks

REPO = Path(__file__).resolve().parents[1]
FIT_SCRIPT = REPO / "benchmarks" / "fit_cost_model.py"


def shipped() -> dict:
    return json.loads(files("ecoserve.core").joinpath("data", "cost_models.json").read_text())


@pytest.fixture(scope="module")
def a100_7b() -> CostModel:
    return CostModel.load("llama-2-7b", "a100-80gb")


def test_every_shipped_entry_loads_on_every_gpu_of_its_family():
    entries = shipped()["entries"]
    assert len(entries) == 22
    for entry in entries.values():
        for gpu in (g for g in GPUS.values() if g.profile == entry["profile"]):
            cm = CostModel.load(entry["model"], gpu.name, entry["tp"])
            assert cm.gpu is gpu and cm.tp == entry["tp"] and cm.model.name == entry["model"]
            assert cm.iteration_time(1, 128, 128 * 128, 0, 8, 8 * 512) > 0


def test_h100_attention_is_labelled_an_estimate_and_is_a100_over_the_ratio():
    data = shipped()
    speedup = data["h100_attention_speedup"]
    for key, entry in data["entries"].items():
        if entry["profile"] != "h100":
            continue
        assert "estimate" in entry["sources"]["attention"]
        a100 = data["entries"][key.replace("/h100/", "/a100/")]
        for field in ("decode_ms", "prefill_ms"):
            for h, a in zip(entry[field], a100[field]):
                assert h == pytest.approx(a / speedup, rel=1e-5)


def test_empty_batch_costs_nothing(a100_7b):
    assert a100_7b.iteration_time(0, 0, 0, 0, 0, 0) == 0.0


@pytest.mark.parametrize(
    "name, gpu, tp", [("llama-2-7b", "a100-80gb", 1), ("llama-3-8b", "h100-80gb", 2), ("llama-2-70b", "a100-80gb", 4)]
)
def test_monotone_in_every_argument(name, gpu, tp):
    cm = CostModel.load(name, gpu, tp)
    base = [2, 600, 2 * 300 * 300, 2 * 300 * 1000, 40, 40 * 800]
    steps = [1, 1, 5000, 5000, 1, 100]
    for i, step in enumerate(steps):
        prev = cm.iteration_time(*base)
        for _ in range(40):
            args = list(base)
            args[i] += step
            now = cm.iteration_time(*args)
            assert now >= prev, (i, args)
            prev, base = now, args
    # Token counts far beyond the profiled range keep growing.
    assert cm.iteration_time(1, 40_000, 40_000**2, 0, 0, 0) > cm.iteration_time(1, 20_000, 20_000**2, 0, 0, 0)


@pytest.mark.parametrize(
    "gpu, args, lo, hi",
    [
        # Profile README §5, Llama-2-7B TP1: (a) one 512-token prefill 36.7 ms, (b) 32 decodes at
        # context 1024 19.9 ms (A100, within 3% / 5%); the H100 ranges are the README's estimates,
        # within 5% of their ends.
        ("a100-80gb", (1, 512, 512**2, 0, 0, 0), 36.7 * 0.97, 36.7 * 1.03),
        ("a100-80gb", (0, 0, 0, 0, 32, 32 * 1024), 19.9 * 0.95, 19.9 * 1.05),
        ("h100-80gb", (1, 512, 512**2, 0, 0, 0), 13.6 * 0.95, 14.0 * 1.05),
        ("h100-80gb", (0, 0, 0, 0, 32, 32 * 1024), 11.0 * 0.95, 12.3 * 1.05),
    ],
)
def test_profile_readme_worked_examples(gpu, args, lo, hi):
    ms = 1e3 * CostModel.load("llama-2-7b", gpu).iteration_time(*args)
    assert lo <= ms <= hi


def test_a100_40gb_has_a100_speed_and_less_memory():
    small, big = CostModel.load("llama-2-7b", "a100-40gb"), CostModel.load("llama-2-7b", "a100-80gb")
    batch = (1, 1000, 10**6, 0, 16, 16000)
    assert small.iteration_time(*batch) == big.iteration_time(*batch)
    assert small.kv_capacity_blocks() < big.kv_capacity_blocks()


def test_cpu_overhead_is_optional_and_about_2_4_ms_at_batch_32():
    args = (0, 0, 0, 0, 32, 32 * 1024)
    base = CostModel.load("llama-2-7b", "a100-80gb").iteration_time(*args)
    with_cpu = CostModel.load("llama-2-7b", "a100-80gb", cpu_overhead=True).iteration_time(*args)
    assert 1e3 * (with_cpu - base) == pytest.approx(2.43, abs=0.15)  # README §3.4: ~2.4 ms


def test_tensor_parallelism_adds_all_reduces_but_shards_the_work():
    one = CostModel.load("llama-2-7b", "a100-80gb", 1)
    two = CostModel.load("llama-2-7b", "a100-80gb", 2)
    assert two.iteration_time(1, 2048, 2048**2, 0, 0, 0) < one.iteration_time(1, 2048, 2048**2, 0, 0, 0)
    assert "allreduce" in two.sources["allreduce"] and "tp=1" in one.sources["allreduce"]


@pytest.mark.parametrize(
    "model, gpu, tp, match",
    [
        ("llama-2-13b", "a100-80gb", 1, "unknown model"),
        ("llama-2-7b", "v100", 1, "unknown gpu"),
        ("llama-2-70b", "a100-80gb", 1, r"available tp: \[2, 4, 8\]"),
        ("llama-2-7b", "h100-80gb", 3, r"available tp: \[1, 2, 4, 8\]"),
    ],
)
def test_unknown_combinations_are_refused(model, gpu, tp, match):
    with pytest.raises(ValueError, match=match):
        CostModel.load(model, gpu, tp)


@pytest.mark.parametrize(
    "decodes, context, target",
    [(0, 0, 0.05), (32, 32 * 1024, 0.05), (200, 200 * 1000, 0.1), (8, 8000, 0.5), (64, 64 * 500, 0.2)],
)
def test_prefill_budget_is_the_largest_chunk_within_the_target(a100_7b, decodes, context, target):
    n = a100_7b.prefill_budget(decodes, context, target)
    assert n > 0

    def time(tokens: int) -> float:
        return a100_7b.iteration_time(1, tokens, tokens * tokens, 0, decodes, context)

    assert time(n) <= target < time(n + 1)


@pytest.mark.parametrize(
    "name, gpu, tp", [("llama-2-7b", "a100-40gb", 1), ("llama-3-8b", "a100-80gb", 1), ("llama-2-70b", "h100-80gb", 8)]
)
def test_prefill_budget_against_every_candidate(name, gpu, tp):
    cm = CostModel.load(name, gpu, tp, cpu_overhead=True)
    rng = random.Random(7)
    for _ in range(200):
        decodes = rng.choice([0, rng.randint(1, 300)])
        context = decodes * rng.randint(1, 8000)
        target = rng.uniform(0.005, 3.0)
        n = cm.prefill_budget(decodes, context, target)
        fits = [cm.iteration_time(1, k, k * k, 0, decodes, context) <= target for k in (n, n + 1)]
        assert fits == [True, False] or (n == 0 and fits == [False, False]), (decodes, context, target, n)


def test_prefill_budget_is_zero_when_nothing_fits(a100_7b):
    assert a100_7b.prefill_budget(0, 0, 0.001) == 0
    assert a100_7b.prefill_budget(128, 128 * 4000, 0.03) == 0


def test_prefill_budget_beyond_the_profiled_range():
    cm = CostModel.load("llama-2-7b", "h100-80gb")
    n = cm.prefill_budget(0, 0, 2.0)
    assert n > 4096
    assert cm.iteration_time(1, n, n * n, 0, 0, 0) <= 2.0 < cm.iteration_time(1, n + 1, (n + 1) ** 2, 0, 0, 0)


def test_kv_capacity_delegates_to_hardware(a100_7b):
    expected = kv_capacity_blocks(get_model("llama-2-7b"), get_gpu("a100-80gb"), 1, 32, 0.8)
    assert a100_7b.kv_capacity_blocks(32, 0.8) == expected


def _close(a, b, path: str) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-9), (path, a, b)
    else:
        assert a == b, path


def test_refitting_the_profiles_reproduces_the_shipped_json(data_dir):
    # tests/data/gpu_profiles holds the rows and columns of Vidur's CSVs that the fit reads,
    # values unchanged (tests/data/NOTICE.md); benchmarks refit from the whole shared copy.
    profiles = data_dir / "gpu_profiles"
    spec = importlib.util.spec_from_file_location("fit_cost_model", FIT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    _close(module.fit(profiles), shipped(), "json")
