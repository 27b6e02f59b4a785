"""Scheduling policies by name: EcoServe with its ablations, and the baselines."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ecoserve.core.cost_model import CostModel
from ecoserve.core.policies.base import Policy
from ecoserve.core.policies.ecoserve import EcoServeConfig, EcoServePolicy
from ecoserve.core.policies.forecast import LengthForecast
from ecoserve.core.policies.orca import OrcaConfig, OrcaPolicy
from ecoserve.core.policies.vllm import VllmConfig, VllmPolicy
from ecoserve.core.policies.vllm_v0 import VllmV0Config, VllmV0Policy

# Each EcoServe variant switches one mechanism off or swaps it for an alternative (oracle: the
# true lengths); docs/scheduling.md says what each mechanism does and docs/results.md what it pays.
ECOSERVE_VARIANTS: dict[str, dict[str, object]] = {
    "ecoserve": {},
    "ecoserve-fcfs": {"order": "fcfs"},
    "ecoserve-slack": {"order": "slack"},
    "ecoserve-yield": {"overload": "yield"},
    "ecoserve-no-overload": {"overload": "none"},
    "ecoserve-no-reservation": {"admission": "on-demand"},
    # The paper's mechanisms: RL reservation, KVC pipelining, RL groups and KV priority.
    "ecoserve-reservation": {"admission": "reservation", "rl_groups": True, "kv_priority": True},
    "ecoserve-reservation-no-pipelining": {
        "admission": "reservation", "rl_groups": True, "kv_priority": True, "pipelining": False,
    },
    "ecoserve-upper": {"admission": "reservation", "reservation": "upper"},
    "ecoserve-half-reservation": {"admission": "reservation", "reservation_scale": 0.5},
    "ecoserve-rl-groups": {"rl_groups": True},
    "ecoserve-kv-priority": {"kv_priority": True},
    "ecoserve-single-queue": {"single_queue": True},
    "ecoserve-deadline-budget": {"deadline_budget": 0.25},
    "ecoserve-oracle": {"lengths": "oracle"},
    "ecoserve-no-budget": {"iteration_target": 0.0},
}
BASELINES = ("vllm", "vllm-budget", "vllm-sjf", "vllm-v0", "orca", "vllm-real")
POLICY_NAMES: tuple[str, ...] = (*ECOSERVE_VARIANTS, *BASELINES, "distserve")


@dataclass(frozen=True, slots=True)
class PolicyOptions:
    """Knobs shared across policies; None keeps each policy's real default."""

    token_budget: int | None = None  # max_num_batched_tokens of the baselines
    max_num_seqs: int | None = None
    watermark: float | None = None
    iteration_target: float = 0.09  # seconds; EcoServe's per-iteration compute budget
    overflow_probability: float | None = None  # EcoServe's KV forecast admission
    overload: str | None = None  # EcoServe's overload control: "shed", "yield" or "none"
    # The predictor's measured errors, for the KV forecast (None: predictions taken as exact).
    lengths: LengthForecast | None = None
    # Automatic prefix caching; None: each policy's default (on for V1 and ecoserve, as in vLLM
    # V1; off for vllm-v0 and orca, whose vLLM generation had it off by default).
    prefix_caching: bool | None = None


def vllm_defaults(cost: CostModel) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) of vLLM's OpenAI server on this GPU."""
    gib = cost.gpu.memory_bytes / 2**30
    if cost.gpu.name.startswith("a100") or gib < 70:
        return 2048, 256
    return 8192, 1024


def make_policy(name: str, cost: CostModel, options: PolicyOptions = PolicyOptions()) -> Policy:
    if name in ECOSERVE_VARIANTS:
        config = EcoServeConfig(iteration_target=options.iteration_target)
        config = replace(config, **ECOSERVE_VARIANTS[name])  # type: ignore[arg-type]
        if options.max_num_seqs:
            config = replace(config, max_num_seqs=options.max_num_seqs)
        if options.overflow_probability is not None:
            config = replace(config, overflow_probability=options.overflow_probability)
        if options.overload is not None:
            config = replace(config, overload=options.overload)  # type: ignore[arg-type]
        policy: Policy = EcoServePolicy(cost, config, options.lengths)
    elif name in ("vllm", "vllm-budget", "vllm-sjf"):
        tokens, seqs = vllm_defaults(cost)
        config_v1 = VllmConfig(
            max_num_batched_tokens=options.token_budget or tokens,
            max_num_seqs=options.max_num_seqs or seqs,
            watermark=options.watermark if options.watermark is not None else 0.0,
            iteration_target=options.iteration_target if name == "vllm-budget" else 0.0,
            order="sjf" if name == "vllm-sjf" else "fcfs",
        )
        policy = VllmPolicy(config_v1, cost)
    elif name == "vllm-v0":
        policy = VllmV0Policy(
            VllmV0Config(
                max_num_batched_tokens=options.token_budget or max(cost.model.max_model_len, 2048),
                max_num_seqs=options.max_num_seqs or 256,
                watermark=options.watermark if options.watermark is not None else 0.01,
            )
        )
    elif name == "vllm-real":  # vLLM's own V1 Scheduler deciding; imports vLLM only once it schedules
        from ecoserve.sim.vllm_real import vllm_real_policy

        return vllm_real_policy(cost, options)  # prefix caching is vLLM's own, not the ledger's
    elif name == "orca":
        policy = OrcaPolicy(
            OrcaConfig(
                max_num_batched_tokens=options.token_budget or max(cost.model.max_model_len, 2048),
                max_num_seqs=options.max_num_seqs or 256,
            )
        )
    else:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICY_NAMES)}")
    policy.name = name
    default_caching = name in ECOSERVE_VARIANTS or name in ("vllm", "vllm-budget", "vllm-sjf")
    policy.prefix_caching = default_caching if options.prefix_caching is None else options.prefix_caching
    return policy


__all__ = ["POLICY_NAMES", "LengthForecast", "PolicyOptions", "Policy", "make_policy", "vllm_defaults"]
