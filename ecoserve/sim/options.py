"""Which `ecoserve simulate` options act on which runs, so that one that would do nothing is
refused at parse time instead of silently ignored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ecoserve.core.policies import ECOSERVE_VARIANTS

ECOSERVE = frozenset(ECOSERVE_VARIANTS)
V1 = frozenset({"vllm", "vllm-budget", "vllm-sjf", "vllm-real"})
VLLM = V1 | {"vllm-v0"}
TOKEN_BUDGETED = VLLM | {"orca"}  # baselines with max_num_batched_tokens
TIME_BUDGETED = ECOSERVE | {"vllm-budget"}
COLOCATED = ECOSERVE | TOKEN_BUDGETED  # everything but distserve


@dataclass(frozen=True, slots=True)
class Scope:
    """An option that acts only on these policies (`what` names them in the error)."""

    policies: frozenset[str]
    what: str


POLICY_SCOPES: dict[str, Scope] = {
    "token_budget": Scope(TOKEN_BUDGETED, "vllm, vllm-budget, vllm-sjf, vllm-real, vllm-v0 and orca"),
    "watermark": Scope(VLLM, "vllm, vllm-budget, vllm-sjf, vllm-real and vllm-v0"),
    "max_num_seqs": Scope(COLOCATED, "every policy but distserve"),
    "iteration_target": Scope(TIME_BUDGETED, "the ecoserve policies and vllm-budget"),
    "overflow_probability": Scope(ECOSERVE, "the ecoserve policies"),
    "num_workers": Scope(COLOCATED, "colocated policies (distserve takes --prefill-workers and --decode-workers)"),
    "router": Scope(COLOCATED, "colocated policies (distserve balances its instances by load)"),
    "prefill_workers": Scope(frozenset({"distserve"}), "distserve"),
    "decode_workers": Scope(frozenset({"distserve"}), "distserve"),
}
CAPACITY_ONLY = ("criterion", "e2e_bound", "itl_bound", "slo_target")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_options(given: Iterable[str], values: Mapping[str, object], policies: Iterable[str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the options the user gave explicitly (`given`).

    An error when the option acts on none of the runs asked for; a warning when it acts on some
    of the policies but not all.
    """
    given = set(given)
    chosen = set(policies)
    errors: list[str] = []
    warnings: list[str] = []
    if not values["capacity"]:
        errors += [f"{flag(n)} applies only with --capacity" for n in CAPACITY_ONLY if n in given]
    elif "itl_bound" in given and values["criterion"] != "itl":
        errors.append("--itl-bound applies only to --criterion itl")
    for name, scope in POLICY_SCOPES.items():
        if name not in given:
            continue
        acted_on = chosen & scope.policies
        if not acted_on:
            errors.append(f"{flag(name)} applies only to {scope.what}, and no such --policy is given")
        elif acted_on != chosen:
            warnings.append(f"{flag(name)} does not apply to {', '.join(sorted(chosen - acted_on))}")
    if "router" in given and values["num_workers"] == 1:
        errors.append("--router needs --num-workers above 1: one worker has nothing to choose between")
    return errors, warnings
