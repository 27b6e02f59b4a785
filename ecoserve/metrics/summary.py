"""RunSummary: one (policy, rate) run reduced to the numbers reports and capacity search use."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from ecoserve.metrics.records import RequestRecord, e2e, meets_slo, tpot, ttft


@dataclass(slots=True)
class RunSummary:
    """Times in seconds, rates in per second. Latency stats cover completed requests only.

    num_requests counts every request offered, `rejected` ones included (refused at arrival,
    as a server answers 400: longer than the model's context, or than a worker's whole KV) and
    `refused` ones (turned away by overload control with a retryable error, as a 429/503);
    SLO attainment is over all of them. `truncated`: prompts cut to fit the context; `dropped`:
    trace rows passed over before the run (not offered, not in num_requests).
    """

    policy: str
    rate: float
    num_requests: int
    completed: int
    duration: float
    throughput_rps: float
    output_token_throughput: float
    ttft_p50: float
    ttft_p90: float
    ttft_p99: float
    tpot_p50: float
    tpot_p90: float
    tpot_p99: float
    itl_p99: float
    e2e_p50: float
    e2e_p90: float
    e2e_p99: float
    jct_mean: float
    slo_attainment: float
    goodput_rps: float
    preemptions: int = 0
    overruns: int = 0
    kv_util_mean: float = 0.0
    sched_us_per_iter: float = 0.0
    sim_speedup: float = 0.0
    rejected: int = 0
    refused: int = 0
    truncated: int = 0
    dropped: int = 0
    prefix_queries: int = 0  # prompt blocks looked up in prefix caches
    prefix_hits: int = 0  # of them, found cached

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else math.nan

    def to_dict(self) -> dict[str, float | int | str | None]:
        """Plain dict for JSON; NaN/inf (no completed request) become null, as JSON has no NaN."""
        out: dict[str, float | int | str | None] = {}
        for name in [f.name for f in fields(self)] + ["prefix_hit_rate"]:
            value = getattr(self, name)
            out[name] = None if isinstance(value, float) and not math.isfinite(value) else value
        return out


def _percentiles(values: np.ndarray, empty: float) -> tuple[float, float, float]:
    """P50/P90/P99, linearly interpolated (numpy's default, as vLLM's benchmark uses)."""
    if len(values) == 0:
        return empty, empty, empty
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def _itl_p99(gaps: np.ndarray, multi_token: bool, no_gap: float) -> float:
    """P99 of gaps pooled over requests; NaN if multi-token requests recorded no gaps (unmeasured)."""
    if len(gaps):
        return float(np.percentile(gaps, 99))
    return math.nan if multi_token else no_gap


def summarize(
    records: Sequence[RequestRecord],
    policy: str,
    rate: float,
    *,
    num_requests: int | None = None,
    preemptions: int | None = None,
    overruns: int = 0,
    kv_util_mean: float = 0.0,
    sched_us_per_iter: float = 0.0,
    sim_speedup: float = 0.0,
    rejected: int = 0,
    refused: int = 0,
    truncated: int = 0,
    dropped: int = 0,
    prefix_queries: int = 0,
    prefix_hits: int = 0,
) -> RunSummary:
    """Summarize completed requests of a run that sent `num_requests` (default: len(records)).

    Requests that never completed are absent from `records`; they count as missing their SLO
    (slo_attainment divides by num_requests) and are left out of the latency percentiles;
    `rejected` of them were refused at arrival, `refused` by overload control.
    TPOT percentiles skip one-token requests, which have no TPOT (0 if none has more).
    `preemptions` defaults to the sum over records; pass the simulator's count to include
    requests that did not complete.
    """
    sent = len(records) if num_requests is None else num_requests
    if sent < len(records) + rejected + refused:
        raise ValueError(
            f"num_requests={sent} is less than the {len(records)} completed records plus "
            f"{rejected} rejected and {refused} refused"
        )
    # With no second token anywhere, TPOT and ITL are 0 (nothing to wait for), as in vLLM.
    no_gap = math.nan if not records else 0.0
    ttfts = np.array([ttft(r) for r in records])
    e2es = np.array([e2e(r) for r in records])
    tpots = np.array([tpot(r) for r in records if r.output_len > 1])
    gaps = np.concatenate([r.itl for r in records]) if records else np.empty(0)
    met = sum(meets_slo(r) for r in records)
    duration = max(r.finish for r in records) - min(r.arrival for r in records) if records else 0.0
    per_s = 1.0 / duration if duration > 0 else 0.0
    ttft_p = _percentiles(ttfts, math.nan)
    tpot_p = _percentiles(tpots, no_gap)
    e2e_p = _percentiles(e2es, math.nan)
    return RunSummary(
        policy=policy,
        rate=rate,
        num_requests=sent,
        completed=len(records),
        duration=duration,
        throughput_rps=len(records) * per_s,
        output_token_throughput=sum(r.output_len for r in records) * per_s,
        ttft_p50=ttft_p[0],
        ttft_p90=ttft_p[1],
        ttft_p99=ttft_p[2],
        tpot_p50=tpot_p[0],
        tpot_p90=tpot_p[1],
        tpot_p99=tpot_p[2],
        itl_p99=_itl_p99(gaps, multi_token=len(tpots) > 0, no_gap=no_gap),
        e2e_p50=e2e_p[0],
        e2e_p90=e2e_p[1],
        e2e_p99=e2e_p[2],
        jct_mean=float(e2es.mean()) if records else math.nan,
        slo_attainment=met / sent if sent else 0.0,
        goodput_rps=met * per_s,
        preemptions=sum(r.preemptions for r in records) if preemptions is None else preemptions,
        overruns=overruns,
        kv_util_mean=kv_util_mean,
        sched_us_per_iter=sched_us_per_iter,
        sim_speedup=sim_speedup,
        rejected=rejected,
        refused=refused,
        truncated=truncated,
        dropped=dropped,
        prefix_queries=prefix_queries,
        prefix_hits=prefix_hits,
    )
