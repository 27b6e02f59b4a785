"""Many workers (DESIGN section 7): EcoServe's placement against vLLM replicas behind the routers
users run, on traffic with and without shared prefixes. Writes docs/results_cluster.md (included
in docs/results.md by benchmarks/headline.py):

    .venv/bin/python benchmarks/cluster.py [--workers 8] [--num-requests 2000] [--jobs 2]
    .venv/bin/python benchmarks/cluster.py --quick   # smoke configuration

For each scenario and system: the capacity under the `slo` criterion (the highest rate at which
90% of requests meet TTFT 2 s / TPOT 100 ms and 99% finish within their own E2E deadline; the
goodput there is what each system serves within SLO), P99 TTFT at 80% of the llm-d router's
capacity, and the prefix hit rate at capacity beside the trace's ideal (an infinite cache).
"""

from __future__ import annotations

import multiprocessing
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ecoserve.metrics import CapacityResult, Criterion, RunSummary, search_capacity
from ecoserve.sim.cluster import ClusterConfig
from ecoserve.sim.experiment import Experiment
from ecoserve.workload.prefix import ideal_hit_rate

OUT = Path(__file__).resolve().parents[1] / "docs" / "results_cluster.md"
console = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    workload: str
    model: str
    gpu: str = "a100-40gb"
    overlong: str = "reject"

    @property
    def label(self) -> str:
        fit = "" if self.overlong == "reject" else ", the requests that fit its context"
        return f"{self.workload}, {self.model}, {self.gpu}{fit}"


@dataclass(frozen=True, slots=True)
class System:
    policy: str
    router: str

    @property
    def label(self) -> str:
        return f"{self.policy} + {self.router}"


SCENARIOS = (
    Scenario("mooncake-8k", "mooncake", "llama-3-8b", overlong="drop"),
    Scenario("mooncake", "mooncake", "llama-3.1-8b", gpu="a100-80gb"),
    Scenario("multi-turn", "multi-turn", "llama-3-8b"),
    Scenario("azure-conv", "azure-conv", "llama-3-8b"),
)
SYSTEMS = (
    System("vllm", "round-robin"),
    System("vllm", "least-loaded"),
    System("vllm", "llm-d"),
    System("vllm", "dynamo"),
    System("ecoserve", "ecoserve"),
)
ECO, LLMD, RR, LEAST = SYSTEMS[4], SYSTEMS[2], SYSTEMS[0], SYSTEMS[1]
CRITERION = Criterion("slo")


def experiment(s: Scenario, system: System, workers: int, n: int | None) -> Experiment:
    cluster = ClusterConfig(model=s.model, gpu=s.gpu, num_workers=workers, router=system.router)
    return Experiment(s.workload, n, overlong=s.overlong, cluster=cluster)  # type: ignore[arg-type]


def search(s: Scenario, system: System, workers: int, n: int, rel_tol: float) -> CapacityResult:
    exp = experiment(s, system, workers, n)
    return search_capacity(exp.evaluate(system.policy), CRITERION, exp.limit().capacity, rel_tol=rel_tol)


def run_at(s: Scenario, system: System, workers: int, n: int, rate: float) -> RunSummary:
    return experiment(s, system, workers, n).run(system.policy, rate).summary(system.policy, rate)


def _task(args: tuple) -> tuple:  # type: ignore[type-arg]
    kind, key, fn_args = args
    return kind, key, (search if kind == "search" else run_at)(*fn_args)


def requests_for(s: Scenario, n: int) -> int:
    """`n`, or every row of a trace that has fewer (Mooncake has 3,993, 1,872 within 8k tokens)."""
    if s.workload == "multi-turn":  # generated: any number
        return n
    return min(n, len(experiment(s, SYSTEMS[0], 1, None).specs(1.0)))


def ideal(s: Scenario, n: int) -> float:
    specs = experiment(s, SYSTEMS[0], 1, n).specs(1.0)
    return ideal_hit_rate((r.prompt_len, r.block_hashes) for r in specs)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def ratio(a: CapacityResult, b: CapacityResult) -> str:
    if a.capacity <= 0 or b.capacity <= 0:
        return "n/a"
    mark = ">= " if a.lower_bound else ""
    return f"{mark}{a.capacity / b.capacity:.2f}x"


def percent(share: float) -> str:
    return "n/a" if share != share else f"{100 * share:.0f}%"  # NaN: nothing to look up


def hit(found: CapacityResult) -> str:
    probe = found.at_capacity()
    return "n/a" if probe is None else percent(probe.summary.prefix_hit_rate)


@click.command()
@click.option("--workers", "worker_counts", multiple=True, type=int, default=(8,), show_default=True)
@click.option("--num-requests", type=int, default=None, help="requests per run  [default: 2000, --quick 300]")
@click.option("--jobs", type=int, default=2, show_default=True)
@click.option("--quick", is_flag=True, help="smoke configuration: two scenarios, 300 requests, 15% bracket")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="[default: docs/results_cluster.md; --quick: out/cluster-quick.md]")
def main(worker_counts: tuple[int, ...], num_requests: int | None, jobs: int, quick: bool, out: Path | None) -> None:
    """Capacity of EcoServe's placement and of vLLM replicas behind each router."""
    n = num_requests or (300 if quick else 2000)
    rel_tol = 0.15 if quick else 0.03
    scenarios = SCENARIOS[2:] if quick else SCENARIOS
    out = out or (Path("out/cluster-quick.md") if quick else OUT)
    sizes = {s.key: requests_for(s, n) for s in scenarios}
    tasks = [("search", (s.key, sys_.label, w), (s, sys_, w, sizes[s.key], rel_tol))
             for w in worker_counts for s in scenarios for sys_ in SYSTEMS]
    found: dict[tuple[str, str, int], CapacityResult] = {}
    runs: dict[tuple[str, str, int], RunSummary] = {}
    start = time.perf_counter()
    with multiprocessing.Pool(jobs) as pool, Progress(
        TextColumn("{task.description:<36}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("capacity searches", total=len(tasks))
        for _, key, value in pool.imap_unordered(_task, tasks):
            found[key] = value
            bar.update(task, advance=1, description=" ".join(map(str, key)))
        # P99 TTFT of every system at 80% of the llm-d router's capacity.
        follow = [("run", (s.key, sys_.label, w), (s, sys_, w, sizes[s.key], 0.8 * found[(s.key, LLMD.label, w)].capacity))
                  for w in worker_counts for s in scenarios for sys_ in SYSTEMS
                  if found[(s.key, LLMD.label, w)].capacity > 0]
        task = bar.add_task("runs at 80% of llm-d", total=len(follow))
        for _, key, value in pool.imap_unordered(_task, follow):
            runs[key] = value
            bar.update(task, advance=1)
    minutes = (time.perf_counter() - start) / 60
    command = " ".join([".venv/bin/python benchmarks/cluster.py", shlex.join(sys.argv[1:])]).strip()
    lines = ["## Many workers: placement against vLLM replicas behind routers", ""]
    if quick:
        lines += ["**Smoke configuration (--quick): not results.**", ""]
    lines += [
        "Generated by `benchmarks/cluster.py` (rerun the command below; this run took "
        f"{minutes:.1f} min wall with --jobs {jobs}). Every system runs the same simulator and",
        f"cost model; each run has {n} requests (seed 0), or the whole trace where it has fewer (the"
        " `requests` column). Systems: vLLM V1 (`vllm`, automatic prefix",
        "caching on, its default) replicas behind round-robin (a Kubernetes Service), vLLM's",
        "data-parallel least-loaded balancing, llm-d's endpoint picker (its default scorers) or",
        "Dynamo's KV router; and EcoServe (`ecoserve` policy with its late-binding placement).",
        "Sources and defaults of each router: `ecoserve/core/placement.py`, docs/scheduling.md.",
        "Capacity: the `slo` criterion, searched to a "
        f"{100 * rel_tol:g}% bracket; goodput at capacity is about 90% of it or more.",
        "",
        "```", command, "```", "",
    ]
    for w in worker_counts:
        rows = []
        for s in scenarios:
            caps = {sys_: found[(s.key, sys_.label, w)] for sys_ in SYSTEMS}
            base = LEAST if s.workload == "azure-conv" else LLMD
            ttft = runs.get((s.key, ECO.label, w)), runs.get((s.key, LLMD.label, w))
            cut = f"{100 * (1 - ttft[0].ttft_p99 / ttft[1].ttft_p99):.0f}%" if all(ttft) and ttft[1].ttft_p99 > 0 else "n/a"
            rows.append([
                s.label, str(sizes[s.key]), *(caps[sys_].label() for sys_ in SYSTEMS),
                ratio(caps[ECO], caps[base]) + f" ({base.router})", ratio(caps[ECO], caps[RR]), cut,
                f"{hit(caps[ECO])} / {hit(caps[LLMD])} / {hit(caps[RR])} (ideal {percent(ideal(s, sizes[s.key]))})",
            ])
        header = ["scenario", "requests", *(f"{sys_.label} (req/s)" for sys_ in SYSTEMS), "ecoserve vs", "ecoserve vs round-robin",
                  "P99 TTFT cut vs llm-d at 80% of its capacity", "prefix hits at capacity: ecoserve / llm-d / round-robin"]
        lines += [f"### {w} workers", "", *table(header, rows), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    console.print(f"wrote {out} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
