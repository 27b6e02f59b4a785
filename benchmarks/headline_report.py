"""The headline report: docs/results.md's sections and the capacity plot, from headline.py's Results."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from headline_config import (
    BASE,
    CLUSTER,
    COMPARED,
    CRITERIA,
    CURVE_LOADS,
    GOODPUT_TPOT,
    GOODPUT_TTFT,
    HEADLINE,
    KVC,
    LOADS,
    MAX_GPUS,
    OVERLOAD,
    PAPER,
    SENSITIVE,
    TARGETS,
    VARIANTS,
    Results,
    Scenario,
    Settings,
)

from ecoserve.core.policies import ECOSERVE_VARIANTS
from ecoserve.metrics import CapacityResult, RunSummary
from ecoserve.metrics.plots import plot_latency_vs_rate


def ratio_of(a: CapacityResult, b: CapacityResult) -> float | None:
    """a's capacity over b's, or None where either is only a bound (none met, or never failed)."""
    if a.capacity <= 0 or b.capacity <= 0 or a.lower_bound or b.lower_bound:
        return None
    return a.capacity / b.capacity


def ratio(a: CapacityResult, b: CapacityResult) -> str:
    """a's capacity over b's; when b met no rate tried, a lower bound from b's failing rate."""
    if b.capacity > 0:
        mark = ">= " if a.lower_bound and not b.lower_bound else "<= " if b.lower_bound and not a.lower_bound else ""
        return f"{mark}{a.capacity / b.capacity:.2f}x"
    return f"> {a.capacity / b.upper:.1f}x" if a.capacity > 0 else "n/a"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def command_block(command: str) -> list[str]:
    return ["```", command, "```", ""]


def scenario_section(res: Results, scenarios: tuple[Scenario, ...], main: str) -> list[str]:
    rows = []
    for s in scenarios:
        limit = res.limits[s.key]
        eco, vllm = (res.capacity[(s.key, p, main, BASE.key)]["slo"].at_capacity() for p in ("ecoserve", "vllm"))
        eco, vllm = (probe.summary if probe else None for probe in (eco, vllm))

        def pair(get: Callable[[RunSummary], float]) -> str:
            return " / ".join(f"{100 * get(r):.0f}%" if r else "n/a" for r in (eco, vllm))

        rows.append([
            s.label, str(s.cluster().num_gpus), f"`{s.flags()}`", res.requests[s.key], f"{limit.kv_bound:.2f}",
            f"{limit.compute_bound:.2f}", limit.binding, pair(lambda r: r.kv_util_mean),
            pair(lambda r: r.throughput_rps / r.rate), str(vllm.preemptions) if vllm else "n/a",
        ])
    header = ["scenario", "GPUs", "`ecoserve simulate` flags", "requests over the context", "limit: KV bound",
              "limit: compute bound",
              "binding", "KV util (ecoserve / vllm)", "served / offered (ecoserve / vllm)", "vllm preemptions"]
    return table(header, rows)


def capacity_section(res: Results, scenarios: tuple[Scenario, ...], main: str, criterion: str) -> list[str]:
    rows = []
    for s in scenarios:
        limit = res.limits[s.key].capacity
        found = {p: res.capacity[(s.key, p, main, BASE.key)][criterion] for p in HEADLINE}
        cells = [f"{f.label()} ({100 * f.capacity / limit:.0f}%)" for f in found.values()]
        eco = found["ecoserve"]
        ratios = [ratio(eco, found[p]) for p in COMPARED]
        rows.append([s.label, f"{limit:.2f}", *cells, *ratios])
    return table(["scenario", "limit", *HEADLINE, *(f"ecoserve / {p}" for p in COMPARED)], rows)


def equal_rate_section(res: Results, scenario: Scenario) -> list[str]:
    rows = []
    for load in LOADS:
        ref = res.runs[(scenario.key, "vllm", load)]
        for policy in HEADLINE:
            r = res.runs[(scenario.key, policy, load)]
            jct_cut = round(100 * (1 - r.jct_mean / ref.jct_mean))
            slo_gain = "n/a"
            if ref.slo_attainment > 0:
                slo_gain = f"{round(100 * (r.slo_attainment / ref.slo_attainment - 1)):+d}%"
            rows.append([
                f"{100 * load:.0f}%", f"{r.rate:.2f}", policy, f"{r.jct_mean:.1f}", f"{jct_cut:+d}%",
                f"{r.ttft_p99:.2f}", f"{1e3 * r.itl_p99:.0f}", f"{100 * r.slo_attainment:.1f}%", slo_gain,
                str(r.preemptions), str(r.refused),
            ])
    header = ["load (of vllm slo capacity)", "rate", "policy", "mean JCT (s)", "JCT reduction vs vllm",
              "P99 TTFT (s)", "P99 ITL (ms)", "SLO attainment", "SLO attainment vs vllm", "preemptions",
              "refused"]
    return table(header, rows)


def overload_section(res: Results, scenarios: tuple[Scenario, ...]) -> list[str]:
    """At OVERLOAD x vllm's slo capacity: goodput and the completed requests' P99 E2E."""
    rows = []
    for s in scenarios:
        ref = res.runs[(s.key, "vllm", OVERLOAD)]
        for policy in HEADLINE:
            r = res.runs[(s.key, policy, OVERLOAD)]
            gain = f"{r.goodput_rps / ref.goodput_rps:.2f}x" if ref.goodput_rps > 0 else "n/a"
            rows.append([
                s.label, f"{r.rate:.2f}", policy, f"{r.goodput_rps:.2f}", gain, f"{r.e2e_p99:.1f}",
                f"{r.e2e_p99 / ref.e2e_p99:.2f}x", f"{100 * r.slo_attainment:.1f}%", str(r.refused),
            ])
    header = ["scenario", "rate", "policy", "goodput (req/s)", "goodput vs vllm", "P99 E2E of completed (s)",
              "vs vllm", "SLO attainment", "refused"]
    return table(header, rows)


def ablation_section(res: Results, main: str, scenario: Scenario) -> list[str]:
    ref = res.capacity[(scenario.key, "ecoserve", main, BASE.key)]
    rows = []
    for policy in ECOSERVE_VARIANTS:
        found = res.capacity[(scenario.key, policy, main, BASE.key)]
        preempted = found["slo"].at_capacity()
        rows.append([policy] + [
            cell for c in CRITERIA for cell in (found[c].label(), ratio(found[c], ref[c]))
        ] + [str(preempted.summary.preemptions) if preempted else "n/a"])
    header = ["policy"] + [h for c in CRITERIA for h in (f"{c} capacity", f"{c}: share of ecoserve")]
    return table(header + ["preemptions at slo capacity"], rows)


def predictor_section(res: Results, settings: Settings) -> list[str]:
    oracle = res.capacity[(KVC.key, "ecoserve-oracle", settings.predictor, BASE.key)]
    configs = [(f"ecoserve --predictor {m}", (KVC.key, "ecoserve", m, BASE.key)) for m in settings.predictor_modes]
    main = settings.predictor
    configs.append((f"ecoserve-oracle --predictor {main}", (KVC.key, "ecoserve-oracle", main, BASE.key)))
    rows = []
    for label, key in configs:
        found = res.capacity[key]
        rows.append([label] + [
            cell for c in CRITERIA for cell in (found[c].label(), ratio(found[c], oracle[c]))
        ])
    header = ["configuration"] + [h for c in CRITERIA for h in (f"{c} capacity", f"{c}: share of ecoserve-oracle")]
    return table(header, rows)


def sensitivity_section(
    res: Results, scenarios: tuple[Scenario, ...], main: str, criterion: str, rel_tol: float
) -> list[str]:
    """ecoserve's capacity ratio to each baseline in every variant, and whether its sign holds.

    Each capacity is only known to within its search bracket (the true value lies in
    [c, c * (1 + rel_tol)]), so a gain holds only where every ratio exceeds 1 + rel_tol, a loss
    only where every ratio is below 1 / (1 + rel_tol)."""
    rows = []
    for s in scenarios:
        cells = []
        for other in SENSITIVE[1:]:
            values = [
                ratio_of(res.capacity[(s.key, "ecoserve", main, v.key)][criterion],
                         res.capacity[(s.key, other, main, v.key)][criterion])
                for v in VARIANTS
            ]
            if any(v is None for v in values):
                cells.append("n/a (a bound)")
                continue
            low, high = min(values), max(values)
            verdict = "gain holds" if low > 1 + rel_tol else "loss holds" if high < 1 / (1 + rel_tol) else "no claim"
            cells.append(f"{values[0]:.2f}x [{low:.2f}-{high:.2f}] {verdict}")
        rows.append([s.label, *cells])
    return table(["scenario", *(f"ecoserve / {p}" for p in SENSITIVE[1:])], rows)


def variants_section(res: Results, scenarios: tuple[Scenario, ...], main: str, criterion: str) -> list[str]:
    """Each capacity behind the ratios, in every variant."""
    rows = []
    for s in scenarios:
        for policy in SENSITIVE:
            rows.append([s.label, policy, *(res.capacity[(s.key, policy, main, v.key)][criterion].label()
                                            for v in VARIANTS)])
    return table(["scenario", "policy", *(v.key for v in VARIANTS)], rows)


def goodput_section(res: Results, settings: Settings) -> list[str]:
    rows = []
    for rate in settings.goodput_rates:
        for ttft in GOODPUT_TTFT:
            eco, dist = res.goodput[(rate, "ecoserve")][ttft], res.goodput[(rate, "distserve")][ttft]
            saving = f"{100 * (1 - eco.gpus / dist.gpus):.0f}%" if eco and dist else "n/a"
            rows.append([
                f"{rate:g}", f"{1e3 * ttft:.0f}", f"{1e3 * GOODPUT_TPOT:.0f}",
                f"{eco.gpus} ({eco.layout})" if eco else f"> {MAX_GPUS}",
                f"{dist.gpus} ({dist.layout})" if dist else f"> {MAX_GPUS}",
                saving,
            ])
    header = ["rate (req/s)", "P90 TTFT target (ms)", "P90 TPOT target (ms)", "ecoserve GPUs",
              "distserve GPUs", "GPUs saved by ecoserve"]
    return table(header, rows)


def plot_capacity(res: Results, scenarios: tuple[Scenario, ...], main: str, path: Path) -> None:
    """Capacity as a share of each scenario's limit, one group of bars per scenario, per criterion."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 8), layout="constrained")
    width = 0.8 / len(HEADLINE)
    for ax, criterion in zip(fig.subplots(2, 1), CRITERIA):
        top = 1.0
        for i, policy in enumerate(HEADLINE):
            shares = [
                res.capacity[(s.key, policy, main, BASE.key)][criterion].capacity / res.limits[s.key].capacity
                for s in scenarios
            ]
            ax.bar([j + i * width for j in range(len(scenarios))], shares, width, label=policy)
            top = max(top, *shares)
        centers = [j + 0.4 - width / 2 for j in range(len(scenarios))]
        ax.set_xticks(centers, [s.tick for s in scenarios], fontsize="small")
        ax.set_ylim(0, 1.2 * top)
        ax.set_ylabel("capacity / limit")
        ax.set_title(f"capacity under the {criterion} criterion, as a share of the limit")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small", ncols=len(HEADLINE))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def write_report(
    res: Results, settings: Settings, scenarios: tuple[Scenario, ...], quick: bool, cost: str, out: Path,
    command: str,
) -> None:
    main = settings.predictor
    img = out.parent / "img"
    plot_capacity(res, scenarios, main, img / "results_capacity.png")
    for s in (PAPER, KVC):
        runs = [res.runs[(s.key, p, load)] for p in HEADLINE for load in sorted(LOADS + CURVE_LOADS)]
        slo = s.cluster().slo
        target = CRITERIA["slo"].slo_target
        plot_latency_vs_rate(runs, img / f"results_latency_{s.key}.png", slo.ttft, slo.tpot, target)

    block = command_block(command)
    lines = ["# Results", ""]
    if quick:
        lines += ["**Smoke configuration (--quick): too few requests and a coarse search; not results.**", ""]
    lines += [
        "Generated by `benchmarks/headline.py`; do not edit by hand, rerun the command above each table.",
        "The closing section, \"Targets\", is hand-written in `docs/targets.md` and appended.",
        "Every number comes from the discrete-event simulator (`ecoserve/sim`), which prices each",
        "iteration with the fitted cost model (`docs/cost_model.md`) and runs the same policy objects",
        "as the live scheduler.",
        "",
        f"- Runs: {settings.num_requests} requests each, seed {settings.seed}. Azure traces keep their",
        "  arrival pattern with inter-arrival times scaled to the rate; ShareGPT arrivals are Poisson.",
        f"- Response-length predictor: `{main}` (`noisy`: the real predictor's measured errors; `oracle`:",
        "  true lengths). SLOs per request: TTFT 2 s, TPOT 100 ms.",
        "- Capacity: the highest rate meeting a criterion, searched as `Experiment.capacity` does: probe",
        "  limit/4, then the limit (doubling while met), then bisect to a "
        f"{100 * settings.rel_tol:g}% bracket; while even the",
        "  low end fails, the bracket moves down 4x. Criteria (`ecoserve.metrics.Criterion`,",
        "  `docs/metrics.md`): `slo` needs SLO attainment >= 90% and the run to keep up (99% of",
        "  requests finish within their own E2E deadline); `itl` needs the same and P99 inter-token",
        "  latency <= 100 ms, so token-level stalls count.",
        "- The limit (DESIGN section 5): the lower of the rate where mean KV occupancy fills the KV",
        "  cache and the rate where prefill plus decode fill every iteration (`Experiment.limit()`).",
        "- Each scenario's model has a context that fits its workload (Llama-3-8B: 8k tokens, Llama-2-70B:",
        "  4k for arxiv); a request longer than the context is rejected at arrival, as the gateway",
        "  answers 400, and counts as a miss (`--overlong reject`); the first table gives their number.",
        "  The `conv-4k` scenario keeps the earlier tables' Llama-2-7B and runs only the azure-conv rows",
        "  that fit its 4k context (`--overlong drop`: the rows passed over are counted).",
        "- KVC-constrained: the paper's GPU scenario with 1/16 of its KV blocks (about as many KV",
        "  tokens as the earlier Llama-2-7B scenario with a quarter of its KV).",
        "- Sensitivity: every capacity behind a ratio is searched again with 2% fewer and 2% more KV",
        "  blocks and on the next slice of the trace (rows "
        f"{settings.num_requests}-{2 * settings.num_requests - 1}, or the next positions of the",
        "  length set's shuffle, with seed + 1); a ratio's sign is claimed only where it holds in all",
        "  four, by more than the search's bracket.",
        f"- This run took {cost}; wall time grows when other work shares the cores, CPU time does not.",
        "",
        "One cell can be checked with `ecoserve simulate` and the scenario's flags from the first table,",
        "for example (its search uses a 3% bracket):",
        "",
        *command_block(
            f"ecoserve simulate {PAPER.flags()} --policy ecoserve --policy vllm --capacity --criterion itl "
            f"--num-requests {settings.num_requests} --predictor {main}"
        ),
        "## Scenarios and their KV regime",
        "",
        "Limits in requests/s for the whole scenario (all its GPUs). The last three columns describe the",
        "run at each policy's slo capacity and show which regime a scenario is in: KV util is the",
        "time-weighted mean share of the KV cache holding written KV; served / offered is completed",
        "requests per second (first arrival to last finish) over the offered rate, below 100% when a",
        "backlog builds up during the run (above it when a length set's drawn Poisson arrivals came",
        "a little faster than their mean rate); vllm preemptions counts recomputations for want of KV.",
        "",
        *block,
        *scenario_section(res, scenarios, main),
        "",
        "## Capacity (requests/s)",
        "",
    ]
    for criterion in CRITERIA:
        lines += [
            f"### Criterion `{criterion}`",
            "",
            "Cells: capacity (share of the limit).",
            "",
            *block,
            *capacity_section(res, scenarios, main, criterion),
            "",
        ]
    lines += ["![capacity](img/results_capacity.png)", "", "## Sensitivity of the capacity ratios", "",
              "Cells: the ratio on the base runs [lowest-highest over base, KV -2%, KV +2%, slice 2], and",
              "whether ecoserve's gain or loss holds in all four by more than the search's "
              f"{100 * settings.rel_tol:g}% bracket", "(else no claim).", ""]
    for criterion in CRITERIA:
        lines += [f"### Criterion `{criterion}`", "", *block, *sensitivity_section(res, scenarios, main, criterion, settings.rel_tol), ""]
    lines += ["### The capacities behind them (requests/s)", "", *block]
    for criterion in CRITERIA:
        lines += [f"Criterion `{criterion}`:", "", *variants_section(res, scenarios, main, criterion), ""]
    lines += [
        "## Overload",
        "",
        f"At {OVERLOAD:g}x vllm's slo capacity: goodput (requests meeting both SLOs per second) and the",
        "P99 E2E of the requests that completed, each against vllm's; `refused` counts the requests",
        "ecoserve's overload control turned away with a retryable error (they count as misses).",
        "",
        *block,
        *overload_section(res, (PAPER, KVC)),
        "",
        "## JCT and SLO attainment at equal rates",
        "",
    ]
    for s in (PAPER, KVC):
        lines += [
            f"### {s.label}",
            "",
            "Rates are shares of vllm's slo capacity. JCT reduction: 1 - JCT / vllm's JCT; SLO attainment",
            "vs vllm: relative change.",
            "",
            *block,
            *equal_rate_section(res, s),
            "",
            f"![latency vs rate](img/results_latency_{s.key}.png)",
            "",
        ]
    lines += [
        "## Ablations",
        "",
        "Each variant switches one mechanism off or swaps it for an alternative",
        "(`ecoserve.core.policies.ECOSERVE_VARIANTS`; docs/scheduling.md says what each does).",
        "",
        f"### {KVC.label}",
        "",
        *block,
        *ablation_section(res, main, KVC),
        "",
        f"### {PAPER.label}",
        "",
        *block,
        *ablation_section(res, main, PAPER),
        "",
        "### Predictor",
        "",
        "ecoserve with each predictor mode (`none`: every request gets the workload's mean and 90th",
        "percentile), and ecoserve-oracle, which orders and forecasts with the true lengths.",
        "",
        *block,
        *predictor_section(res, settings),
        "",
        "## GPUs for a goodput target: colocated ecoserve vs distserve",
        "",
        f"{PAPER.label}, {settings.goodput_requests} requests per run. The fewest GPUs whose run at the",
        "target rate has P90 TTFT and P90 TPOT within",
        "their targets (DistServe's goodput definition). ecoserve: n colocated workers; distserve: every",
        "prefill/decode split of each total. 200 ms is DistServe's default TTFT target; 1 s is a looser",
        f"one for an 8B model on an A100. Searched up to {MAX_GPUS} GPUs.",
        "",
        *block,
        *goodput_section(res, settings),
        "",
    ]
    if not quick:
        if CLUSTER.exists():  # benchmarks/cluster.py's tables, run apart (many workers)
            lines += [CLUSTER.read_text()]
        lines += [TARGETS.read_text()]  # the hand-written reading of these tables
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


