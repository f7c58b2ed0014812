"""Prometheus metrics with vLLM's names and ``model_name`` label, served at ``/metrics``.

Existing vLLM dashboards, KEDA triggers and inference gateways read these series
unchanged. Load figures (running / waiting / KV usage / preemptions / prefix cache) are
read from the engine's :class:`EngineStats` at scrape time; per-request figures (tokens,
TTFT, inter-token latency, end-to-end latency, queue time, finish reasons) are recorded
by :class:`RequestTimer` as a request streams; the KV cache's size (fixed at load) is
``vllm:cache_config_info`` and two ``dsr:kv_cache_*`` gauges. HTTP status counts use the names of
prometheus-fastapi-instrumentator (``http_requests_total``). Created by ``server.app``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..engine.api import EngineStats, FinishReason
from ..engine.kv_sizing import KVCacheSizing

TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
E2E_BUCKETS = (
    0.05,
    0.1,
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
TOKEN_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)


class _KVCacheCollector(Collector):
    """The KV cache's size, fixed at load: vLLM's ``vllm:cache_config_info`` (value 1, the
    settings as labels) plus its blocks, tokens and bytes as plain gauges."""

    def __init__(self, model_name: str, sizing: Callable[[], KVCacheSizing | None]) -> None:
        self._model = model_name
        self._sizing = sizing

    def collect(self) -> Iterator[Metric]:
        k = self._sizing()
        if k is None:
            return
        info = {
            "block_size": str(k.block_size),
            "num_gpu_blocks": str(k.num_blocks),  # vLLM's name, whatever the device
            "cache_dtype": k.dtype,
            "sizing": k.source,
            "kv_cache_memory_bytes": str(k.memory_bytes),
        }
        g = GaugeMetricFamily(
            "vllm:cache_config_info", "KV cache configuration.", labels=["model_name", *info]
        )
        g.add_metric([self._model, *info.values()], 1.0)
        yield g
        for name, doc, value in (
            ("dsr:kv_cache_tokens_total", "Tokens the KV cache holds.", k.num_tokens),
            ("dsr:kv_cache_memory_bytes", "Bytes of the KV cache on this rank.", k.memory_bytes),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=["model_name"])
            gauge.add_metric([self._model], value)
            yield gauge


class _EngineCollector(Collector):
    """Turns the engine's stats snapshot into gauges and counters at scrape time."""

    def __init__(self, model_name: str, stats: Callable[[], EngineStats | None]) -> None:
        self._model = model_name
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        if s is None:
            return
        labels = ["model_name"]
        values = [self._model]

        def gauge(name: str, doc: str, value: float) -> Metric:
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric(values, value)
            return g

        def counter(name: str, doc: str, value: float) -> Metric:
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric(values, value)
            return c

        yield gauge("vllm:num_requests_running", "Requests in the running batch.", s.num_running)
        yield gauge("vllm:num_requests_waiting", "Requests waiting to run.", s.num_waiting)
        yield gauge("vllm:kv_cache_usage_perc", "KV cache usage (1 = full).", s.kv_cache_usage)
        yield gauge("dsr:kv_cache_blocks_total", "KV cache blocks in all.", s.num_blocks_total)
        yield gauge("dsr:kv_cache_blocks_free", "Free KV cache blocks.", s.num_blocks_free)
        yield gauge(
            "dsr:kv_cache_fragmentation_perc",
            "Share of allocated KV cache slots not holding a token (1 = all wasted).",
            s.kv_cache_waste,
        )
        yield counter("vllm:num_preemptions", "Preemptions.", s.num_preemptions)
        yield counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in tokens.", s.prefix_cache_queries
        )
        yield counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in tokens.", s.prefix_cache_hits
        )


class ServerMetrics:
    """The registry behind ``/metrics`` and the instruments the routes record into."""

    def __init__(
        self,
        model_name: str,
        stats: Callable[[], EngineStats | None],
        kv_cache: Callable[[], KVCacheSizing | None] | None = None,
    ) -> None:
        self.model_name = model_name
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        r.register(_EngineCollector(model_name, stats))
        if kv_cache is not None:
            r.register(_KVCacheCollector(model_name, kv_cache))
        m = ["model_name"]
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prefill tokens processed.", m, registry=r
        ).labels(model_name)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Generated tokens.", m, registry=r
        ).labels(model_name)
        self.request_success = Counter(
            "vllm:request_success", "Finished requests.", [*m, "finished_reason"], registry=r
        )
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token.",
            m,
            buckets=TTFT_BUCKETS,
            registry=r,
        ).labels(model_name)
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Inter-token latency.",
            m,
            buckets=ITL_BUCKETS,
            registry=r,
        ).labels(model_name)
        self.tpot = Histogram(
            "vllm:time_per_output_token_seconds",
            "Time per output token (older vLLM name of inter-token latency).",
            m,
            buckets=ITL_BUCKETS,
            registry=r,
        ).labels(model_name)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency.",
            m,
            buckets=E2E_BUCKETS,
            registry=r,
        ).labels(model_name)
        self.queue = Histogram(
            "vllm:request_queue_time_seconds",
            "Time a request waited before its first scheduling step "
            "(observed when the engine reports it).",
            m,
            buckets=E2E_BUCKETS,
            registry=r,
        ).labels(model_name)
        self.req_prompt = Histogram(
            "vllm:request_prompt_tokens",
            "Prompt tokens per request.",
            m,
            buckets=TOKEN_BUCKETS,
            registry=r,
        ).labels(model_name)
        self.req_gen = Histogram(
            "vllm:request_generation_tokens",
            "Generated tokens per request.",
            m,
            buckets=TOKEN_BUCKETS,
            registry=r,
        ).labels(model_name)
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests by handler and status.",
            ["handler", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency.",
            ["handler", "method"],
            buckets=E2E_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def timer(self, prompt_tokens: int) -> RequestTimer:
        return RequestTimer(self, prompt_tokens)


class RequestTimer:
    """Records one engine sequence's latencies as its outputs arrive."""

    __slots__ = ("_done", "_last", "_m", "_prompt", "first_token_at", "started")

    def __init__(self, metrics: ServerMetrics, prompt_tokens: int) -> None:
        self._m = metrics
        self._prompt = prompt_tokens
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self._last = self.started
        self._done = False

    def on_tokens(self, new_tokens: int) -> None:
        if new_tokens <= 0:
            return
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
            self._m.ttft.observe(now - self.started)
            new_tokens -= 1
        elif new_tokens > 0:
            gap = (now - self._last) / new_tokens
            for _ in range(new_tokens):
                self._m.itl.observe(gap)
                self._m.tpot.observe(gap)
        self._last = now

    def finish(
        self,
        reason: FinishReason | str | None,
        completion_tokens: int,
        queue_seconds: float | None = None,
    ) -> None:
        if self._done:
            return
        self._done = True
        m = self._m
        m.prompt_tokens.inc(self._prompt)
        m.generation_tokens.inc(completion_tokens)
        m.req_prompt.observe(self._prompt)
        m.req_gen.observe(completion_tokens)
        m.e2e.observe(time.perf_counter() - self.started)
        if queue_seconds is not None:
            m.queue.observe(queue_seconds)
        label = reason.value if isinstance(reason, FinishReason) else (reason or "abort")
        m.request_success.labels(m.model_name, label).inc()
