"""Unit test: vLLM's scheduler series, as its stat logger registers them, become EngineStats."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from deepseek_runtime.backends.vllm import vllm_registry_stats


def test_vllm_series_are_summed_over_engines_into_engine_stats() -> None:
    registry = CollectorRegistry()
    labels = ["model_name", "engine"]
    running = Gauge("vllm:num_requests_running", "", labels, registry=registry)
    waiting = Gauge("vllm:num_requests_waiting", "", labels, registry=registry)
    usage = Gauge("vllm:kv_cache_usage_perc", "", labels, registry=registry)
    preempted = Counter("vllm:num_preemptions", "", labels, registry=registry)
    queries = Counter("vllm:prefix_cache_queries", "", labels, registry=registry)
    hits = Counter("vllm:prefix_cache_hits", "", labels, registry=registry)
    for engine, n in (("0", 2), ("1", 3)):
        running.labels("m", engine).set(n)
        waiting.labels("m", engine).set(n + 10)
        preempted.labels("m", engine).inc(n)
        queries.labels("m", engine).inc(100 * n)
        hits.labels("m", engine).inc(10 * n)
    usage.labels("m", "0").set(0.25)
    stats = vllm_registry_stats(registry, running_seen=99)
    assert (stats.num_running, stats.num_waiting) == (5, 25)
    assert stats.kv_cache_usage == 0.25
    assert (stats.num_preemptions, stats.prefix_cache_queries, stats.prefix_cache_hits) == (
        5,
        500,
        50,
    )


def test_without_vllm_series_the_adapter_count_stands() -> None:
    stats = vllm_registry_stats(CollectorRegistry(), running_seen=3)
    assert (stats.num_running, stats.num_waiting, stats.kv_cache_usage) == (3, 0, 0.0)
