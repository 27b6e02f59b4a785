"""What is simulated: the model, the GPUs, the policy, and how workers are arranged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ecoserve.core.cost_model import CostModel
from ecoserve.core.kv_ledger import KVLedger
from ecoserve.core.policies import PolicyOptions, make_policy
from ecoserve.core.policies.distserve import DistServeConfig, DistServeDecodePolicy, DistServePrefillPolicy
from ecoserve.core.request import Slo
from ecoserve.core.scheduler import WorkerScheduler

Role = Literal["colocated", "prefill", "decode"]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    model: str = "llama-2-7b"
    gpu: str = "a100-40gb"
    tp: int = 1
    policy: str = "ecoserve"
    num_workers: int = 1  # colocated workers (each of `tp` GPUs)
    # Which worker serves a request (ecoserve/core/placement.py); None: the policy's own, the
    # ecoserve placement for ecoserve policies and round-robin (a Kubernetes Service) for baselines.
    router: str | None = None
    options: PolicyOptions = field(default_factory=PolicyOptions)
    slo: Slo = field(default_factory=Slo)
    block_size: int = 16
    mem_fraction: float = 0.9
    kv_blocks: int | None = None  # override the capacity derived from GPU memory
    # DistServe only: instance counts and the KV link between them.
    prefill_workers: int = 1
    decode_workers: int = 1
    link_gbytes_per_s: float = 25.0

    @property
    def disaggregated(self) -> bool:
        return self.policy == "distserve"

    @property
    def placement(self) -> str:
        if self.disaggregated:
            return "least-kv"  # DistServe balances its prefill instances by load
        if self.router is not None:
            return self.router
        return "ecoserve" if self.policy.startswith("ecoserve") else "round-robin"

    @property
    def num_gpus(self) -> int:
        workers = self.prefill_workers + self.decode_workers if self.disaggregated else self.num_workers
        return workers * self.tp


@dataclass(eq=False, slots=True)
class SimWorker:
    index: int
    role: Role
    sched: WorkerScheduler
    busy: bool = False


def build_workers(config: ClusterConfig, cost: CostModel) -> list[SimWorker]:
    blocks = config.kv_blocks or cost.kv_capacity_blocks(config.block_size, config.mem_fraction)

    def worker(i: int, role: Role) -> SimWorker:
        if role == "prefill":
            policy = DistServePrefillPolicy(
                DistServeConfig(max_num_batched_tokens=max(cost.model.max_model_len, 2048))
            )
        elif role == "decode":
            policy = DistServeDecodePolicy(DistServeConfig())
        else:
            policy = make_policy(config.policy, cost, config.options)
        return SimWorker(i, role, WorkerScheduler(policy, KVLedger(blocks, config.block_size), i))

    if config.disaggregated:
        roles: list[Role] = ["prefill"] * config.prefill_workers + ["decode"] * config.decode_workers
        return [worker(i, r) for i, r in enumerate(roles)]
    return [worker(i, "colocated") for i in range(config.num_workers)]
