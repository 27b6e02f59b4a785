"""Fit the iteration cost model (ecoserve/core/cost_model.py) to Vidur's GPU profiles.

Writes ecoserve/core/data/cost_models.json (what ships), docs/cost_model.md (method, choices,
held-out errors) and, with --plot, docs/img/cost_model_*.png:

    .venv/bin/python benchmarks/fit_cost_model.py [--profiles DIR] [--plot]

Every term is fitted twice: on a seeded 80% split, to measure the error on the other 20%, and on
all points, which is what ships.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import timeit
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecoserve.core.cost_model import FITTED_AS, CostModel, entry_key
from ecoserve.core.hardware import GIB, GPUS, MODELS, RESERVE_BYTES_PER_GPU, ModelSpec, kv_capacity_blocks

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROFILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "gpu_profiles"
JSON_OUT = REPO / "ecoserve" / "core" / "data" / "cost_models.json"
DOC_OUT = REPO / "docs" / "cost_model.md"
IMG_DIR = REPO / "docs" / "img"

SEED = 20240519
HOLDOUT = 0.2
TABLE_TOL = 0.005  # a table knot is dropped when interpolation reproduces it within 0.5%
H100_ATTN_SPEEDUP = 1.65  # README §5: HBM 3.35 / 2.04 TB/s, memory-bound ops in the MLP files
LAUNCH_MS = 0.02  # per all-reduce, as Vidur
TPS = (1, 2, 4, 8)
MIN_TP = {"llama-2-70b": 2}  # 138 GB of weights fit on no single GPU we model
FAMILIES = ("a100", "h100")
NETWORK = {"a100": "a100_dgx", "h100": "h100_dgx"}
HF = {
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf",
}
ATTN_7B = "compute/a100/meta-llama/Llama-2-7b-hf/attention_sampled.csv"
ATTN_8B = "compute/a100/meta-llama/Meta-Llama-3-8B/attention_sampled.csv"
ATTN_70B = "compute/a100/meta-llama/Llama-2-70b-hf/attention_tp2_legacy.csv.gz"
# Host-overhead rows exist for Llama-2-7B TP1 and Llama-2-70B TP4 only.
CPU_ROWS = {
    "llama-2-7b": ("llama-2-7b", 1),
    "llama-3-8b": ("llama-2-7b", 1),
    "llama-2-70b": ("llama-2-70b", 4),
}
LIN_OPS = (
    "attn_pre_proj", "attn_post_proj", "attn_rope", "mlp_up_proj", "mlp_act", "mlp_down_proj",
    "input_layernorm", "post_attention_layernorm", "add",
)
MEMORY_BOUND_OPS = ("attn_rope", "mlp_act", "input_layernorm", "post_attention_layernorm", "add")
CPU_COLS = (
    "schedule_median", "sampler_e2e_median", "prepare_inputs_e2e_median",
    "process_model_outputs_median", "ray_comm_time_mean",
)

# --- reading the profiles -------------------------------------------------------------------------


def mlp_file(model: str, family: str) -> str:
    return f"compute/{family}/{HF[model]}/mlp.csv.gz"


class Profiles:
    """The Vidur CSVs, parsed once each."""

    def __init__(self, root: Path) -> None:
        self.vidur = root / "vidur"
        if not self.vidur.is_dir():
            raise SystemExit(f"no Vidur profiles under {root}")
        self._cache: dict[str, list[dict[str, str]]] = {}

    def _path(self, rel: str) -> Path:
        """rel, or else its gzipped copy rel.gz (tests/data ships the profiles' CSVs gzipped)."""
        path = self.vidur / rel
        return path if path.exists() or path.suffix == ".gz" else path.with_name(path.name + ".gz")

    def rows(self, rel: str) -> list[dict[str, str]]:
        if rel not in self._cache:
            path = self._path(rel)
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", newline="") as f:
                self._cache[rel] = list(csv.DictReader(f))
        return self._cache[rel]

    def has(self, rel: str) -> bool:
        return self._path(rel).exists()

    def lin(
        self, model: str, family: str, tp: int, ops: tuple[str, ...] = LIN_OPS
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-layer sum of the op medians by token count (duplicate counts averaged)."""
        acc: dict[int, list[float]] = defaultdict(list)
        for r in self.rows(mlp_file(model, family)):
            if int(r["num_tensor_parallel_workers"]) == tp:
                acc[int(r["num_tokens"])].append(sum(float(r[f"time_stats.{op}.median"]) for op in ops))
        n = sorted(acc)
        return np.array(n, float), np.array([np.mean(acc[k]) for k in n])

    def attention(self, rel: str) -> tuple[np.ndarray, np.ndarray]:
        """Decode rows (batch, kv, ms) and prefill rows (chunk, kv, ms)."""
        dec, pre = [], []
        for r in self.rows(rel):
            if r["is_prefill"] == "True":
                ms = float(r["time_stats.attn_prefill.median"])
                pre.append((int(r["prefill_chunk_size"]), int(r["kv_cache_size"]), ms))
            else:
                ms = float(r["time_stats.attn_decode.median"])
                dec.append((int(r["batch_size"]), int(r["kv_cache_size"]), ms))
        return np.array(dec, float), np.array(pre, float)

    def allreduce(self, family: str, tp: int) -> tuple[np.ndarray, np.ndarray]:
        """All-reduce ms by message bytes, on rows with num_workers == devices_per_node == tp."""
        acc: dict[int, list[float]] = defaultdict(list)
        for r in self.rows(f"network/{NETWORK[family]}/all_reduce.csv.gz"):
            if int(r["num_workers"]) == tp and int(r["devices_per_node"]) == tp:
                acc[int(r["size"])].append(float(r["time_stats.all_reduce.median"]))
        sizes = sorted(acc)
        return np.array(sizes, float), np.array([np.mean(acc[s]) for s in sizes])

    def cpu(self, model: str, tp: int) -> tuple[np.ndarray, np.ndarray]:
        """Host ms per iteration (the five terms Vidur uses) by batch size."""
        rows = [
            r for r in self.rows("cpu_overhead/a100/cpu_overheads_legacy.csv.gz")
            if r["model_name"] == HF[model] and int(r["tensor_parallel_degree"]) == tp
        ]
        return (
            np.array([float(r["batch_size"]) for r in rows]),
            np.array([sum(float(r[c]) for c in CPU_COLS) for r in rows]),
        )


# --- fitting primitives ---------------------------------------------------------------------------


def isotonic(y: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    sums: list[float] = []
    counts: list[int] = []
    for v in y:
        sums.append(float(v))
        counts.append(1)
        while len(sums) > 1 and sums[-2] / counts[-2] > sums[-1] / counts[-1]:
            s, c = sums.pop(), counts.pop()
            sums[-1] += s
            counts[-1] += c
    return np.repeat([s / c for s, c in zip(sums, counts)], counts)


def simplify(x: np.ndarray, y: np.ndarray, tol: float) -> np.ndarray:
    """Indices of the knots to keep: each dropped point is within tol (relative) of the line
    between the kept knots around it."""
    keep, i = [0], 0
    while i < len(x) - 1:
        j = i + 1
        while j + 1 < len(x):
            xs, ys = x[i + 1 : j + 1], y[i + 1 : j + 1]
            line = y[i] + (y[j + 1] - y[i]) * (xs - x[i]) / (x[j + 1] - x[i])
            if np.any(np.abs(line - ys) > tol * ys):
                break
            j += 1
        keep.append(j)
        i = j
    return np.array(keep)


def fit_table(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    knots_y = isotonic(y)
    keep = simplify(x, knots_y, TABLE_TOL)
    return x[keep], knots_y[keep]


def fit_linear(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative error (rows weighted 1/y, so small and large points count alike,
    as in MAPE). A coefficient that comes out negative is fixed at 0 and the rest refitted, so the
    model stays monotone."""
    active = list(range(X.shape[1]))
    w = 1.0 / y
    while True:
        coef, *_ = np.linalg.lstsq(X[:, active] * w[:, None], y * w, rcond=None)
        if (coef >= 0).all():
            break
        active.pop(int(np.argmin(coef)))
    out = np.zeros(X.shape[1])
    out[active] = coef
    return out


def decode_design(rows: np.ndarray) -> np.ndarray:
    """[1, B, B*L] for decode rows (B, L, ...): L is each sequence's context."""
    return np.column_stack([np.ones(len(rows)), rows[:, 0], rows[:, 0] * rows[:, 1]])


def prefill_design(rows: np.ndarray) -> np.ndarray:
    """[1, c, c^2, c*k] for prefill rows (c, k, ...)."""
    c, k = rows[:, 0], rows[:, 1]
    return np.column_stack([np.ones(len(rows)), c, c * c, c * k])


def heldout_mask(n: int, name: str, keep_ends: bool = False) -> np.ndarray:
    """The seeded held-out 20% of n points; the same for a name on every run."""
    mask = np.random.default_rng([SEED, zlib.crc32(name.encode())]).random(n) < HOLDOUT
    if keep_ends:  # tables are only interpolated, never extrapolated, on held-out points
        mask[0] = mask[-1] = False
    return mask


@dataclass(frozen=True)
class Attention:
    """Per-layer attention coefficients (ms) for a head layout per GPU."""

    decode: np.ndarray  # a, b, c
    prefill: np.ndarray  # a', b', c', d'
    q_per_gpu: float
    kv_per_gpu: float

    def scaled(self, q_per_gpu: float, kv_per_gpu: float, speedup: float = 1.0) -> Attention:
        """README §6: decode work scales with KV bytes per GPU, prefill work with query heads per
        GPU; the intercepts (launch-bound) stay. `speedup` divides everything (H100 estimate)."""
        kv, q = kv_per_gpu / self.kv_per_gpu, q_per_gpu / self.q_per_gpu
        return Attention(
            self.decode * np.array([1, kv, kv]) / speedup,
            self.prefill * np.array([1, q, q, q]) / speedup,
            q_per_gpu,
            kv_per_gpu,
        )


@dataclass(frozen=True)
class Heldout:
    """Measured and predicted values of one term on points its fit did not see."""

    term: str
    case: str
    measured: np.ndarray
    predicted: np.ndarray


# --- the fit --------------------------------------------------------------------------------------


Table = tuple[np.ndarray, np.ndarray]


class Fitter:
    """Fits every term; with holdout=True on the 80% split, recording the other 20%."""

    def __init__(self, prof: Profiles, holdout: bool) -> None:
        self.prof, self.holdout = prof, holdout
        self.heldout: list[Heldout] = []
        self._lin: dict[tuple[str, str, int], Table] = {}

    def _table(self, term: str, case: str, x: np.ndarray, y: np.ndarray) -> Table:
        if not self.holdout:
            return fit_table(x, y)
        test = heldout_mask(len(x), f"{term}/{case}", keep_ends=True)
        kx, ky = fit_table(x[~test], y[~test])
        self.heldout.append(Heldout(term, case, y[test], np.interp(x[test], kx, ky)))
        return kx, ky

    def _linear(self, term: str, case: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        if not self.holdout:
            return fit_linear(X, y)
        test = heldout_mask(len(y), f"{term}/{case}")
        coef = fit_linear(X[~test], y[~test])
        self.heldout.append(Heldout(term, case, y[test], X[test] @ coef))
        return coef

    def lin(self, model: str, family: str, tp: int) -> Table:
        key = (model, family, tp)
        if key not in self._lin:
            case = f"{model} {family} tp{tp}"
            self._lin[key] = self._table("Lin", case, *self.prof.lin(model, family, tp))
        return self._lin[key]

    def lin_by_ratio(self, model: str, ref: str, family: str, ref_family: str, tp: int) -> Table:
        """Lin of `model` on `family`, where it was not profiled: `ref` on `family` times the
        measured model / ref ratio on `ref_family`, at every token count of ref's grid."""
        n = self.prof.lin(ref, family, tp)[0]

        def at(m: str, f: str) -> np.ndarray:
            return np.interp(n, *self.lin(m, f, tp))

        return fit_table(n, at(ref, family) * at(model, ref_family) / at(ref, ref_family))

    def attention(self, path: str, case: str, q_per_gpu: float, kv_per_gpu: float) -> Attention:
        dec, pre = self.prof.attention(path)
        d = self._linear("decode attention", case, decode_design(dec), dec[:, 2])
        p = self._linear("prefill attention", case, prefill_design(pre), pre[:, 2])
        return Attention(d, p, q_per_gpu, kv_per_gpu)

    def cpu(self) -> dict[str, np.ndarray]:
        """Host overhead [e, f] (ms, ms per sequence) by model."""
        fits = {}
        for src, tp in set(CPU_ROWS.values()):
            batch, ms = self.prof.cpu(src, tp)
            X = np.column_stack([np.ones_like(batch), batch])
            fits[src, tp] = self._linear("cpu overhead", f"{src} tp{tp}", X, ms)
        return {model: fits[src] for model, src in CPU_ROWS.items()}

    def allreduce(self, family: str, tp: int) -> dict[str, Any]:
        table = self._table("all-reduce", f"{family} tp{tp}", *self.prof.allreduce(family, tp))
        source = f"measured: network/{NETWORK[family]}/all_reduce.csv.gz, {tp} GPUs in one node"
        return {"source": source, **table_json(*table, "bytes")}

    def build(self) -> dict[str, Any]:
        """The JSON that ships."""
        l7 = self.attention(ATTN_7B, "llama-2-7b a100 tp1", 32, 32)
        l70 = self.attention(ATTN_70B, "llama-2-70b a100 tp2", 32, 4)
        attention = {
            "llama-2-7b": (l7, "measured: Llama-2-7B A100 TP1 attention_sampled.csv"),
            "llama-3-8b": (l7, "derived from Llama-2-7B A100 TP1 for GQA "
                               "(decode x KV bytes, prefill x q heads per GPU)"),
            "llama-2-70b": (l70, "measured: Llama-2-70B A100 TP2 attention_tp2_legacy.csv"),
        }
        cpu = self.cpu()
        entries = {
            entry_key(name, family, tp): self._entry(spec, family, tp, *attention[name], cpu[name])
            for name, spec in MODELS.items()
            if name not in FITTED_AS  # priced with another model's fit
            for family in FAMILIES
            for tp in TPS
            if tp >= MIN_TP.get(name, 1)
        }
        return {
            "format": 1,
            "generator": "benchmarks/fit_cost_model.py",
            "profiles": "Vidur (github.com/microsoft/vidur @ 7d47513, MIT licence); see docs/cost_model.md",
            "units": "ms per layer on one GPU (cpu_overhead_ms: ms per iteration); n in tokens",
            "allreduce_launch_ms": LAUNCH_MS,
            "h100_attention_speedup": H100_ATTN_SPEEDUP,
            "allreduce": {f"{f}/tp{tp}": self.allreduce(f, tp) for f in FAMILIES for tp in TPS[1:]},
            "entries": entries,
        }

    def _entry(
        self, spec: ModelSpec, family: str, tp: int, attn: Attention, attn_src: str, cpu: np.ndarray
    ) -> dict[str, Any]:
        name = spec.name
        if self.prof.has(mlp_file(name, family)):
            lin, lin_src = self.lin(name, family, tp), f"measured: {mlp_file(name, family)}"
        else:
            lin = self.lin_by_ratio(name, "llama-2-7b", family, "a100", tp)
            lin_src = f"estimate: llama-2-7b {family} x ({name} / llama-2-7b on a100), per token count"
        heads = (spec.n_q_heads / tp, spec.n_kv_heads / tp)
        if heads != (attn.q_per_gpu, attn.kv_per_gpu):
            attn_src += f"; scaled to {heads[0]:g} q / {heads[1]:g} kv heads per GPU (estimate)"
        speedup = 1.0
        if family == "h100":
            speedup = H100_ATTN_SPEEDUP
            attn_src = f"a100 / {H100_ATTN_SPEEDUP} (estimate); a100: {attn_src}"
        attn = attn.scaled(*heads, speedup)
        cpu_src, cpu_tp = CPU_ROWS[name]
        return {
            "model": name,
            "profile": family,
            "tp": tp,
            "sources": {
                "lin": lin_src,
                "attention": attn_src,
                "allreduce": "none (tp=1)" if tp == 1 else f"allreduce[{family}/tp{tp}]",
                "cpu_overhead": f"cpu_overheads_legacy.csv.gz, {cpu_src} tp{cpu_tp} (A100 host)",
            },
            "lin": table_json(*lin, "n"),
            "decode_ms": sig(attn.decode),
            "prefill_ms": sig(attn.prefill),
            "cpu_overhead_ms": sig(cpu),
        }


def sig(values: np.ndarray, digits: int = 6) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values]


def table_json(x: np.ndarray, y: np.ndarray, xname: str) -> dict[str, list]:
    return {xname: [int(v) for v in x], "ms": sig(y, 5)}


def fit(profiles: Path) -> dict[str, Any]:
    """The shipped coefficients, fitted on every profile point."""
    return Fitter(Profiles(profiles), holdout=False).build()


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":")) + "\n"


# --- evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    term: str
    case: str
    points: int
    mape: float  # %
    max_err: float  # %
    bias: float  # mean signed error, %

    @classmethod
    def of(cls, h: Heldout) -> Score:
        rel = 100 * (h.predicted - h.measured) / h.measured
        err = np.abs(rel)
        return cls(h.term, h.case, len(rel), float(err.mean()), float(err.max()), float(rel.mean()))


def pooled(items: list[Heldout], term: str) -> Heldout:
    sel = [h for h in items if h.term == term]
    measured = np.concatenate([h.measured for h in sel])
    return Heldout(term, "all cases pooled", measured, np.concatenate([h.predicted for h in sel]))


def whole_iteration(
    prof: Profiles, data: dict[str, Any], model: str, tp: int, attn_path: str
) -> list[Heldout]:
    """Held-out attention rows as whole iterations: n_layers x (Lin + all-reduces + attention),
    'measured' from the raw medians (Lin and all-reduce interpolated at N), predicted by the model
    fitted on the 80% split."""
    spec = MODELS[model]
    entry = data["entries"][entry_key(model, "a100", tp)]
    cm = CostModel(spec, GPUS["a100-80gb"], tp, entry, data["allreduce"].get(f"a100/tp{tp}"), LAUNCH_MS)
    lin_raw = prof.lin(model, "a100", tp)
    ar_raw = prof.allreduce("a100", tp) if tp > 1 else None

    def measured(tokens: np.ndarray, attn_ms: np.ndarray) -> np.ndarray:
        n8 = np.ceil(tokens / 8) * 8
        ms = np.interp(n8, *lin_raw) + attn_ms
        if ar_raw is not None:
            ms += 2 * (np.interp(n8 * spec.hidden * 2, *ar_raw) + LAUNCH_MS)
        return spec.n_layers * ms * 1e-3

    case = f"{model} a100 tp{tp}"
    dec, pre = prof.attention(attn_path)
    dec = dec[heldout_mask(len(dec), f"decode attention/{case}")]
    pre = pre[heldout_mask(len(pre), f"prefill attention/{case}")]
    dec_pred = [cm.iteration_time(0, 0, 0, 0, int(b), int(b * k)) for b, k, _ in dec]
    pre_pred = [cm.iteration_time(1, int(c), int(c * c), int(c * k), 0, 0) for c, k, _ in pre]
    return [
        Heldout("iteration (decode rows)", case, measured(dec[:, 0], dec[:, 2]), np.array(dec_pred)),
        Heldout("iteration (prefill rows)", case, measured(pre[:, 0], pre[:, 2]), np.array(pre_pred)),
    ]


def derivation_checks(prof: Profiles, fitter: Fitter) -> list[Heldout]:
    """How well the derivation rules predict data they were not fitted to."""
    checks = []
    l7 = fitter.attention(ATTN_7B, "llama-2-7b a100 tp1", 32, 32)
    for path, case, q, kv in (
        (ATTN_8B, "llama-2-7b -> llama-3-8b (FlashInfer sample)", 32, 8),
        (ATTN_70B, "llama-2-7b -> llama-2-70b tp2", 32, 4),
    ):
        attn = l7.scaled(q, kv)
        dec, pre = prof.attention(path)
        checks.append(Heldout("decode attention", case, dec[:, 2], decode_design(dec) @ attn.decode))
        checks.append(Heldout("prefill attention", case, pre[:, 2], prefill_design(pre) @ attn.prefill))
    for tp in (2, 4, 8):
        n, y = prof.lin("llama-2-70b", "h100", tp)
        table = fitter.lin_by_ratio("llama-2-70b", "llama-2-7b", "h100", "a100", tp)
        case = f"h100 llama-2-70b tp{tp} from llama-2-7b by a100 ratio"
        checks.append(Heldout("Lin", case, y, np.interp(n, *table)))
    return checks


def memory_bound_ratio(prof: Profiles) -> tuple[float, float]:
    """A100 / H100 time of the elementwise ops (norms, activation, add, RoPE) at N >= 1024, the
    range over models and TP degrees: what HBM bandwidth buys on H100."""
    ratios = []
    for model in ("llama-2-7b", "llama-2-70b"):
        for tp in TPS:
            a100, h100 = (prof.lin(model, f, tp, MEMORY_BOUND_OPS) for f in FAMILIES)
            big = a100[0] >= 1024
            ratios.append(a100[1][big].sum() / h100[1][big].sum())
    return min(ratios), max(ratios)


def lin_ratio(fitter: Fitter) -> tuple[float, float]:
    """Range of the fitted llama-3-8b / llama-2-7b Lin ratio on A100, N <= 4096, every TP."""
    ratios = []
    for tp in TPS:
        n = fitter.prof.lin("llama-2-7b", "a100", tp)[0]
        l8, l7 = (np.interp(n, *fitter.lin(m, "a100", tp)) for m in ("llama-3-8b", "llama-2-7b"))
        ratios.append(l8 / l7)
    return float(np.min(ratios)), float(np.max(ratios))


# (label, model, gpu, batch, README value in ms)
EXAMPLES = (
    ("(a) prefill 512", "a100-80gb", (1, 512, 512 * 512, 0, 0, 0), "36.7"),
    ("(b) decode 32 x ctx 1024", "a100-80gb", (0, 0, 0, 0, 32, 32 * 1024), "19.9"),
    ("(a) prefill 512", "h100-80gb", (1, 512, 512 * 512, 0, 0, 0), "13.6-14.0 (estimate)"),
    ("(b) decode 32 x ctx 1024", "h100-80gb", (0, 0, 0, 0, 32, 32 * 1024), "11.0-12.3 (estimate)"),
)


def worked_examples(data: dict[str, Any]) -> list[tuple[str, str, float, str]]:
    """The profile README's Llama-2-7B TP1 examples: (label, gpu, model ms, README ms)."""
    out = []
    for label, gpu, batch, ref in EXAMPLES:
        entry = data["entries"][entry_key("llama-2-7b", GPUS[gpu].profile, 1)]
        cm = CostModel(MODELS["llama-2-7b"], GPUS[gpu], 1, entry, None, LAUNCH_MS)
        out.append((label, gpu, 1e3 * cm.iteration_time(*batch), ref))
    return out


def per_call_us(method: str, args: tuple[float, ...]) -> float:
    """Best of 5 x 20,000 calls of a Llama-2-7B A100 CostModel method, in microseconds."""
    f = getattr(CostModel.load("llama-2-7b", "a100-80gb"), method)
    timer = timeit.Timer(f"f{args}", globals={"f": f})
    return min(timer.repeat(repeat=5, number=20_000)) / 20_000 * 1e6


# --- report ---------------------------------------------------------------------------------------

COLUMNS = ("term", "case", "points", "MAPE %", "max %", "bias %")


def cells(s: Score) -> tuple[str, ...]:
    return (s.term, s.case, str(s.points), f"{s.mape:.1f}", f"{s.max_err:.1f}", f"{s.bias:+.1f}")


def md_table(items: list[Heldout]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(cells(Score.of(h))) + " |" for h in items]
    return "\n".join(lines)


def print_table(title: str, items: list[Heldout]) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    table = RichTable(title=title)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("term", "case") else "right")
    for h in items:
        table.add_row(*cells(Score.of(h)))
    Console().print(table)


def plot(heldout: list[Heldout], whole: list[Heldout], checks: list[Heldout]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    IMG_DIR.mkdir(parents=True, exist_ok=True)
    figures = {
        "terms": ("held-out profile points (ms per layer)", heldout,
                  ("Lin", "all-reduce", "decode attention", "prefill attention")),
        "iteration": ("held-out attention rows as whole iterations (s)", whole,
                      ("iteration (decode rows)", "iteration (prefill rows)")),
        "derived": ("derivation rules vs data they were not fitted to (ms per layer)", checks,
                    ("decode attention", "prefill attention", "Lin")),
    }
    paths = []
    for name, (title, items, terms) in figures.items():
        fig, axes = plt.subplots(1, len(terms), figsize=(4.5 * len(terms), 4.2), squeeze=False)
        for ax, term in zip(axes[0], terms):
            for h in (h for h in items if h.term == term):
                ax.scatter(h.measured, h.predicted, s=6, alpha=0.6, label=h.case)
            lo, hi = ax.get_xlim()
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set(xscale="log", yscale="log", xlabel="measured", ylabel="predicted", title=term)
            ax.legend(fontsize=6)
        fig.suptitle(title)
        fig.tight_layout()
        path = IMG_DIR / f"cost_model_{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


DOC = """\
# Iteration cost model

`ecoserve/core/cost_model.py` predicts the time of one batched forward pass from coefficients in
`ecoserve/core/data/cost_models.json`. Both the JSON and this page are written by

    .venv/bin/python benchmarks/fit_cost_model.py [--plot]

from the Vidur operator profiles in `shared/data/gpu_profiles` (Microsoft Vidur, MIT licence; their
README explains every file). Nothing reads the profiles at run time. Every number on this page comes
from that command.

## The model

    T = n_layers * [Lin(N) + 2 * (AR(N) + 0.02 ms) + A_dec + A_pre] + host overhead

| term | meaning | form |
| --- | --- | --- |
| Lin(N) | projections, MLP, norms, RoPE, residual of one layer on one GPU; N = prefill tokens + decodes, rounded up to a multiple of 8 (as Vidur) | monotone table in N, linear between knots |
| AR(N) | one all-reduce of N x hidden fp16 activations; two per layer when TP > 1, each + 0.02 ms launch (as Vidur) | monotone table in bytes |
| A_dec | decode attention of the B decoding sequences with summed context S | a + b*B + c*S, 0 when B = 0 |
| A_pre | prefill attention over chunks c_i with cached prefixes k_i | a'*count + b'*sum c + c'*sum c^2 + d'*sum c*k |
| host | scheduling, input preparation, sampling, output processing, Ray (off by default, as Vidur) | e + f*(sequences in the batch) |

Embedding, LM head and KV-cache writes are not charged, as in Vidur's defaults.

    from ecoserve.core.cost_model import CostModel
    cm = CostModel.load("llama-2-7b", "a100-80gb", tp=1)            # cpu_overhead=False
    cm.iteration_time(num_prefills, prefill_tokens, prefill_sq, prefill_cross,
                      num_decodes, decode_context)                  # seconds
    cm.prefill_budget(num_decodes, decode_context, time_target)     # largest fresh chunk
    cm.kv_capacity_blocks(block_size=16, mem_fraction=0.9)

## KV-cache capacity

`ecoserve/core/hardware.py`: (TP x GPU memory x 0.9 - weights - TP x {reserve_gib} GiB) / KV bytes per
block. The {reserve_gib} GiB per GPU (CUDA context, cuBLAS/NCCL workspaces, peak activations of the
engine's profiling pass) is an assumption, not a measurement. Blocks of 16 tokens:

{kv_table}

## Where each coefficient comes from

| entry | Lin | attention | all-reduce |
| --- | --- | --- | --- |
| llama-2-7b a100 tp1 | measured | measured (fit to the 1,032-row sample) | - |
| llama-2-7b a100 tp2/4/8 | measured | tp1 fit, heads per GPU scaled (**estimate**) | measured |
| llama-3-8b a100 tp1-8 | measured (to 32,768 tokens) | llama-2-7b fit scaled for GQA (**estimate**) | measured |
| llama-2-70b a100 tp2 | measured | measured (fit to the complete 14,658-row TP2 file) | measured |
| llama-2-70b a100 tp4/8 | measured | tp2 fit, heads per GPU scaled (**estimate**) | measured |
| any h100 entry | measured, except llama-3-8b (**estimate**, below) | the a100 entry / {speedup} (**estimate**) | measured (h100_dgx) |

The JSON says the same per entry in `sources`, and `CostModel.sources` exposes it.
llama-2-70b at tp1 is not offered: 138 GB of weights fit on no GPU we model.

## Method and choices

* **Tables (Lin, all-reduce): isotonic least squares, then knot thinning.** The profiles have real
  steps (GEMM wave quantisation: Lin jumps at multiples of 128 tokens on A100) and noise (H100 Lin
  at 96 tokens is above 128; NCCL small-message times vary several-fold). A smooth curve would erase the
  steps; a raw table would be non-monotone, and the scheduler's token budget needs the cost to grow
  with N. The pool-adjacent-violators fit is the closest non-decreasing curve in least squares,
  steps kept. Knots that linear interpolation reproduces within {tol:.1%} are dropped, which keeps
  the JSON small ({json_kb:.0f} KB). Beyond the last knot (4,096 tokens; 32,768 for llama-3-8b;
  64 MiB for all-reduce) the table continues along the secant of its upper half, where both are
  linear.
* **Attention: linear least squares on relative error** (rows weighted 1/y, so a 9 us and a 3 ms
  kernel count alike, as in MAPE). These are the README §6 forms and reproduce its coefficients.
  A coefficient that comes out negative (70B decode's per-sequence term) is fixed at 0 and the rest
  refitted, so iteration time is monotone in every argument. Decode uses the sum of the contexts,
  so a batch of unequal lengths costs what their total KV read costs (Vidur uses the mean, rounded
  up to 64); prefills add up per chunk (Vidur looks up one equivalent chunk).
* **No GQA surcharge.** Vidur adds 10% to GQA attention when more than one sequence is batched; the
  70B coefficients are fitted to batched GQA measurements, and the 8B ones are an estimate anyway.
* **GQA and TP scaling** (README §6): decode b and c scale with KV bytes per token per GPU
  (2 x kv heads/TP x 128 x 2 B), prefill b', c', d' with query heads per GPU; intercepts (kernel
  launch) stay. Llama-3-8B (32 q / 8 kv heads) gets the Llama-2-7B fit with decode x 1/4, prefill
  x 1. The checks below test these rules on the Llama-3-8B sample and on the 70B TP2 file, neither
  of which the 7B fit saw: MAPE {attn_check}, in opposite directions for the two models (different
  kernels: FlashInfer for the 8B sample, FlashAttention for the 70B file), so no correction
  factor is applied.
* **H100 attention is an estimate:** no H100 attention profile exists, so every A100 attention
  coefficient is divided by {speedup}, the HBM bandwidth ratio (3.35 / 2.04 TB/s) quoted by the
  profile README. The memory-bound ops in the MLP files (norms, activation, add, RoPE) run {mem_ratio}x
  faster on H100 at N >= 1024, so {speedup} is the cautious end; FlashAttention-class kernels are
  expected to gain less than the 3.1x of GEMMs.
* **Llama-3-8B on H100 is an estimate:** Vidur has no H100 profile for it. Lin = llama-2-7b's
  measured H100 table x the measured llama-3-8b / llama-2-7b ratio on A100 at the same token count
  ({lin_ratio}x: bigger MLP, smaller QKV), isotonic refit, up to 4,096 tokens. The same rule predicts
  llama-2-70b on H100 from its A100 data; the check below shows how far that is off.
* **All-reduce**: rows with num_workers == devices_per_node == TP (one DGX node), as Vidur.
* **Host overhead** (`CostModel.load(..., cpu_overhead=True)`): sum of the five medians Vidur uses
  from the legacy A100 file, linear in the number of sequences. Rows exist only for Llama-2-7B TP1
  (used for both 8B-class models) and Llama-2-70B TP4 (used for 70B at every TP; 6.7 ms of it is
  Ray communication of that older engine). Applied on H100 too: it is host time. e, f in ms:
  {cpu}.
* **Held-out split**: a seeded 20% of each term's points (per case; table endpoints stay in training
  so the held-out points are interpolated). The errors below are of the fit on the other 80%; the
  JSON is then refitted on all points.

## Error on held-out profile points

Per layer, ms; bias = mean signed error (+ = model too slow).

{heldout_table}

Pooled over cases:

{pooled_table}

### Whole iterations on held-out attention rows

Each held-out attention row as an iteration on its own (decode: B sequences of the row's context;
prefill: one chunk); "measured" = n_layers x (raw Lin medians at N + all-reduces + the row's
attention median).

{whole_table}

### Checks of the derivation rules (data the rules were not fitted to)

{check_table}

### The profile README's worked examples (shipped coefficients)

| example | gpu | model (ms) | README (ms) |
| --- | --- | ---: | --- |
{examples}

A100 (b) is {a100_decode} off: the fitted decode attention at B = 32, context 1,024 differs from
that grid row's median (the fit's error at one point). H100 (a) is above the README's range because the
measured H100 Lin is not monotone around 512 tokens (0.3915 ms at 448 tokens, 0.3745 ms at 512):
the isotonic fit pools such points into one level.

### Hot path

`iteration_time` takes {us:.2f} us per call for a mixed batch (2 prefill chunks of 700 tokens in
all, 48 decodes), `prefill_budget` {budget_us:.1f} us (48 decodes, 50 ms target: a bisection on N
with the same arithmetic); best of 5 x 20,000 calls, CPython 3.11 on the machine that ran the fit.
{images}
## Limits

* Medians of kernel time only; no CPU gaps unless `cpu_overhead=True`. Vidur reports < 9% error for
  its (richer) model against real runs.
* Token counts above the profiled range, batches > 128 decodes and contexts > 4k are extrapolated.
* Attention at TP degrees or models without data, all of H100 attention, and Llama-3-8B on H100 are
  estimates; treat comparisons that hinge on them with care.
"""


def render_doc(
    data: dict[str, Any],
    heldout: list[Heldout],
    whole: list[Heldout],
    checks: list[Heldout],
    facts: dict[str, Any],
    images: list[Path],
) -> str:
    attn_mape = [Score.of(h).mape for h in checks if "attention" in h.term]
    examples = worked_examples(data)
    _, _, ms, ref = examples[1]  # (b) on A100
    a100_decode = ms / float(ref) - 1
    cpu = "; ".join(
        f"{m} {data['entries'][entry_key(m, 'a100', MIN_TP.get(m, 1))]['cpu_overhead_ms']}"
        for m in MODELS if m not in FITTED_AS
    )
    terms = ("Lin", "all-reduce", "decode attention", "prefill attention")
    kv_rows = ["| model | gpu | tp | blocks | tokens |", "| --- | --- | ---: | ---: | ---: |"]
    for key, entry in data["entries"].items():
        for gpu in (g for g in GPUS.values() if g.profile == entry["profile"]):
            try:
                blocks = kv_capacity_blocks(MODELS[entry["model"]], gpu, entry["tp"])
            except ValueError:
                continue  # does not fit
            kv_rows.append(f"| {entry['model']} | {gpu.name} | {entry['tp']} | {blocks:,} | {16 * blocks:,} |")
    return DOC.format(
        speedup=H100_ATTN_SPEEDUP,
        tol=TABLE_TOL,
        json_kb=len(dump(data)) / 1024,
        attn_check=f"{min(attn_mape):.0f}-{max(attn_mape):.0f}%",
        mem_ratio="{:.2f}-{:.2f}".format(*facts["mem_ratio"]),
        lin_ratio="{:.2f}-{:.2f}".format(*facts["lin_ratio"]),
        cpu=cpu,
        reserve_gib=RESERVE_BYTES_PER_GPU / GIB,
        kv_table="\n".join(kv_rows),
        heldout_table=md_table(heldout),
        pooled_table=md_table([pooled(heldout, t) for t in terms]),
        whole_table=md_table(whole),
        check_table=md_table(checks),
        examples="\n".join(f"| {label} | {gpu} | {ms:.1f} | {ref} |" for label, gpu, ms, ref in examples),
        a100_decode=f"{100 * a100_decode:+.1f}%",
        us=facts["us"],
        budget_us=facts["budget_us"],
        images="".join(f"\n![{p.stem}](img/{p.name})\n" for p in images),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES, help="the gpu_profiles folder")
    parser.add_argument("--plot", action="store_true", help="also write docs/img/cost_model_*.png")
    args = parser.parse_args()

    prof = Profiles(args.profiles)
    full, split = Fitter(prof, holdout=False), Fitter(prof, holdout=True)
    data, split_data = full.build(), split.build()
    whole = whole_iteration(prof, split_data, "llama-2-7b", 1, ATTN_7B)
    whole += whole_iteration(prof, split_data, "llama-2-70b", 2, ATTN_70B)
    checks = derivation_checks(prof, full)

    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(dump(data))
    facts = {  # the timings run after the write: they load the shipped JSON
        "us": per_call_us("iteration_time", (2, 700, 250_000, 60_000, 48, 43_200)),
        "budget_us": per_call_us("prefill_budget", (48, 43_200, 0.05)),
        "mem_ratio": memory_bound_ratio(prof),
        "lin_ratio": lin_ratio(full),
    }
    images = plot(split.heldout, whole, checks) if args.plot else []
    DOC_OUT.parent.mkdir(parents=True, exist_ok=True)
    DOC_OUT.write_text(render_doc(data, split.heldout, whole, checks, facts, images))

    print_table("held-out error (ms per layer)", split.heldout)
    print_table("whole iterations on held-out attention rows (s)", whole)
    print_table("derivation checks (ms per layer)", checks)
    print(
        f"iteration_time: {facts['us']:.2f} us/call, prefill_budget: {facts['budget_us']:.1f} us; wrote {JSON_OUT.relative_to(REPO)} "
        f"({len(dump(data)) / 1024:.0f} KB), {DOC_OUT.relative_to(REPO)}"
        + "".join(f", {p.relative_to(REPO)}" for p in images)
    )


if __name__ == "__main__":
    main()
