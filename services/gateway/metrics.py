"""The gateway's Prometheus metrics, named as vLLM names them where the meaning is the same.

Latencies are measured at the gateway (what a client sees, tokenization and prediction included).
Scheduler-side gauges (running, waiting, KV usage, preemptions) are read from the scheduler's Stats
at scrape time.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ecoserve.proto import scheduler_pb2

_LATENCY = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_TOKENS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SLO_WINDOW = 1000  # finished requests per class behind the attainment gauge


class SchedulerStats(Collector):
    """Exports the last Stats reply; `update` is called before each scrape."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.latest: scheduler_pb2.StatsResponse | None = None

    def update(self, stats: scheduler_pb2.StatsResponse | None) -> None:
        self.latest = stats

    def collect(self) -> Iterator[Metric]:
        s = self.latest
        up = GaugeMetricFamily("ecoserve:scheduler_up", "1 if the scheduler answered the last Stats call")
        up.add_metric([], 0.0 if s is None else 1.0)
        yield up
        if s is None:
            return
        label = ["model_name"], [self.model_name]
        capacity = sum(w.capacity_blocks for w in s.workers)
        values = (
            ("vllm:num_requests_running", "Requests in the workers' running batches",
             sum(w.running for w in s.workers)),
            ("vllm:num_requests_waiting", "Requests accepted and not running",
             sum(w.waiting for w in s.workers) + s.pending),
            ("vllm:kv_cache_usage_perc", "KV-cache usage, 0 to 1, over all workers",
             sum(w.used_blocks for w in s.workers) / capacity if capacity else 0.0),
            ("ecoserve:workers", "Workers connected to the scheduler", len(s.workers)),
        )
        for name, doc, value in values:
            g = GaugeMetricFamily(name, doc, labels=label[0])
            g.add_metric(label[1], float(value))
            yield g
        c = CounterMetricFamily("vllm:num_preemptions", "Preemptions on the connected workers", labels=label[0])
        c.add_metric(label[1], float(sum(w.preemptions for w in s.workers)))
        yield c
        # vLLM counts its prefix_cache_queries/hits in tokens; the ledger counts blocks.
        for name, doc, field in (
            ("ecoserve:prefix_cache_query_blocks", "Prompt blocks looked up in the workers' prefix caches",
             "prefix_query_blocks"),
            ("ecoserve:prefix_cache_hit_blocks", "Of them, found cached", "prefix_hit_blocks"),
        ):
            c = CounterMetricFamily(name, doc, labels=label[0])
            c.add_metric(label[1], float(sum(getattr(w, field) for w in s.workers)))
            yield c


class GatewayMetrics:
    def __init__(self, model_name: str) -> None:
        self.registry = r = CollectorRegistry()
        m = ["model_name"]
        self.model_name = model_name
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token", m, registry=r,
                              buckets=_LATENCY)
        self.tpot = Histogram("vllm:request_time_per_output_token_seconds", "Per request: (E2E - TTFT) / (tokens - 1)",
                              m, registry=r, buckets=_LATENCY)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Gap between consecutive tokens", m, registry=r,
                             buckets=_LATENCY)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Request latency, arrival to last token", m,
                             registry=r, buckets=_LATENCY)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens of finished requests", m, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens", "Generated tokens", m, registry=r)
        self.success = Counter("vllm:request_success", "Finished requests", [*m, "finished_reason"], registry=r)
        self.rejected = Counter("ecoserve:requests_rejected", "Requests refused or failed, by error kind",
                                [*m, "reason"], registry=r)
        self.in_flight = Gauge("ecoserve:gateway_requests_in_flight", "Requests this gateway is serving", m,
                               registry=r)
        self.pred_error = Histogram("ecoserve:predictor_abs_error_tokens", "|generated - predicted point| per request",
                                    m, registry=r, buckets=_TOKENS)
        self.pred_overrun = Counter("ecoserve:predictor_overruns", "Requests that generated more than the predicted "
                                    "upper bound", m, registry=r)
        self.pred_fallback = Counter("ecoserve:predictor_fallbacks", "Requests sent without a prediction (predictor "
                                     "slow or down)", m, registry=r)
        self.slo = Counter("ecoserve:slo_requests", "Finished requests by SLO class and whether both targets were met",
                           [*m, "slo_class", "attained"], registry=r)
        self.slo_ratio = Gauge("ecoserve:slo_attainment",
                               f"Share of the last {SLO_WINDOW} finished requests of a class that met both targets",
                               [*m, "slo_class"], registry=r)
        self.scheduler = SchedulerStats(model_name)
        r.register(self.scheduler)
        self._recent: dict[str, deque[bool]] = defaultdict(lambda: deque(maxlen=SLO_WINDOW))

    def reject(self, reason: str) -> None:
        self.rejected.labels(self.model_name, reason).inc()

    def finished(self, *, reason: str, prompt_tokens: int, tokens: int, ttft: float | None, e2e: float,
                 slo_class: str, attained: bool) -> None:
        name = self.model_name
        self.success.labels(name, reason).inc()
        self.prompt_tokens.labels(name).inc(prompt_tokens)
        self.e2e.labels(name).observe(e2e)
        if ttft is not None:
            self.ttft.labels(name).observe(ttft)
        if ttft is not None and tokens > 1:
            self.tpot.labels(name).observe((e2e - ttft) / (tokens - 1))
        self.slo.labels(name, slo_class, str(attained).lower()).inc()
        recent = self._recent[slo_class]
        recent.append(attained)
        self.slo_ratio.labels(name, slo_class).set(sum(recent) / len(recent))

    def token(self, gap_s: float | None) -> None:
        self.generation_tokens.labels(self.model_name).inc()
        if gap_s is not None:
            self.itl.labels(self.model_name).observe(gap_s)

    def prediction(self, point: int, upper: int, actual: int) -> None:
        self.pred_error.labels(self.model_name).observe(abs(actual - point))
        if actual > upper:
            self.pred_overrun.labels(self.model_name).inc()
