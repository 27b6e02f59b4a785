"""Runs in a spawned child process of the vLLM engine tests: one VllmEngine, driven step by step.

vLLM binds threads and keeps process-wide state once an engine exists, so the engine lives in a
process of its own (`start` builds it), and the tests call these functions through a process pool.
`run_plans` is the worker's loop in miniature: EcoServe's own WorkerScheduler and policy plan each
iteration exactly as the scheduler service does (token slices of prompt + output, resets for the
preempted, releases for the finished), and the engine executes the plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecoserve.core.kv_ledger import KVLedger
from ecoserve.core.policies.vllm import VllmConfig, VllmPolicy
from ecoserve.core.request import Prediction, Request
from ecoserve.core.scheduler import WorkerScheduler
from ecoserve.engine import SamplingParams, StepItem

_engine = None
GREEDY = SamplingParams(temperature=0.0, max_tokens=16)


def start(model_dir: str, num_blocks: int) -> tuple[int, int]:
    """Build this process's engine; (its KV blocks, its block size)."""
    global _engine
    from ecoserve.engine.vllm.config import VllmEngineConfig
    from ecoserve.engine.vllm.engine import VllmEngine

    _engine = VllmEngine(VllmEngineConfig(model_dir, block_size=32, num_blocks=num_blocks))
    return _engine.num_blocks, _engine.block_size


def free_blocks() -> int:
    return _engine.num_free_blocks


@dataclass
class PlanRun:
    tokens: list[list[int]]
    reasons: list[str | None]
    chunk_items: int = 0  # prefill chunks that did not sample
    preemptions: int = 0
    steps: int = 0
    largest_step: int = 0  # tokens
    free_after: int = 0
    notes: list[str] = field(default_factory=list)


def run_plans(jobs: list[tuple[list[int], int]], token_budget: int) -> PlanRun:
    """Serve `jobs` (prompt, max_tokens) greedily with plans from EcoServe's `vllm` policy."""
    engine = _engine
    sched = WorkerScheduler(VllmPolicy(VllmConfig(max_num_batched_tokens=token_budget)),
                            KVLedger(engine.num_blocks, engine.block_size))
    prompts = {}
    outputs: dict[int, list[int]] = {}
    reasons: dict[int, str | None] = {}
    for rid, (prompt, max_tokens) in enumerate(jobs):
        sched.add_request(Request(rid, 0.0, len(prompt), max_tokens, Prediction(max_tokens, max_tokens, 0)))
        prompts[rid] = prompt
        outputs[rid] = []
    run = PlanRun([], [])
    release: list[int] = []
    while sched.has_work():
        plan = sched.schedule(float(run.steps))
        for rid in release:
            engine.release(rid)
        release = []
        for req in plan.preempted:
            engine.reset(req.id)
        items = []
        for req, n in plan.items:
            seq = prompts[req.id] + outputs[req.id]
            sample = req.num_computed + n >= req.num_tokens
            items.append(StepItem(req.id, seq[req.num_computed:req.num_computed + n], req.num_computed, sample,
                                  SamplingParams(temperature=0.0, max_tokens=req.max_tokens - len(outputs[req.id]))))
            run.chunk_items += not sample
        results, _ = engine.step(items)
        stopped = set()
        for out in results:
            if out.token_id is not None:
                outputs[out.request_id].append(out.token_id)
            if out.finished:
                stopped.add(out.request_id)
                reasons[out.request_id] = out.finish_reason
        for req in sched.update(plan, float(run.steps), frozenset(stopped)):
            release.append(req.id)
            reasons.setdefault(req.id, req.finish_reason)
        run.steps += 1
        run.largest_step = max(run.largest_step, sum(len(it.token_ids) for it in items))
    for rid in release:
        engine.release(rid)
    run.tokens = [outputs[rid] for rid in range(len(jobs))]
    run.reasons = [reasons.get(rid) for rid in range(len(jobs))]
    run.preemptions = sched.stats.preemptions
    run.free_after = engine.num_free_blocks
    return run


def run_items(steps: list[list[tuple]], resets: dict[int, list[int]] | None = None,
              releases: dict[int, list[int]] | None = None) -> list[list[tuple]]:
    """Raw steps: each a list of (request_id, token_ids, start_pos, sample, params?) items; `resets`
    and `releases` by step index. Returns each step's outputs as (id, token, finished, reason)."""
    done = []
    for i, step in enumerate(steps):
        for rid in (releases or {}).get(i, []):
            _engine.release(rid)
        for rid in (resets or {}).get(i, []):
            _engine.reset(rid)
        items = [StepItem(rid, list(toks), start, sample, params[0] if params else GREEDY)
                 for rid, toks, start, sample, *params in step]
        outputs, _ = _engine.step(items)
        done.append([(o.request_id, o.token_id, o.finished, o.finish_reason) for o in outputs])
    return done


def refused(step: list[tuple]) -> str | None:
    """The error a bad step gets (None if it was accepted)."""
    try:
        run_items([step])
    except (ValueError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def release_all(ids: list[int]) -> None:
    for rid in ids:
        _engine.release(rid)
