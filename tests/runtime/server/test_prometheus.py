"""A real Prometheus (Debian's package) scrapes ``/metrics`` and serves the vLLM-named series."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from server_harness import ServerProcess, free_port

pytestmark = [pytest.mark.slow]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

SERIES = [
    'vllm:num_requests_running{model_name="tiny-v3"}',
    'vllm:num_requests_waiting{model_name="tiny-v3"}',
    'vllm:kv_cache_usage_perc{model_name="tiny-v3"}',
    'vllm:prompt_tokens_total{model_name="tiny-v3"}',
    'vllm:generation_tokens_total{model_name="tiny-v3"}',
    'vllm:request_success_total{model_name="tiny-v3",finished_reason="length"}',
    'vllm:num_preemptions_total{model_name="tiny-v3"}',
    'vllm:prefix_cache_queries_total{model_name="tiny-v3"}',
    'vllm:prefix_cache_hits_total{model_name="tiny-v3"}',
    'vllm:time_to_first_token_seconds_count{model_name="tiny-v3"}',
    'vllm:inter_token_latency_seconds_count{model_name="tiny-v3"}',
    'vllm:e2e_request_latency_seconds_count{model_name="tiny-v3"}',
    'vllm:request_queue_time_seconds_count{model_name="tiny-v3"}',
    'dsr:kv_cache_fragmentation_perc{model_name="tiny-v3"}',
    'vllm:cache_config_info{model_name="tiny-v3",sizing="cpu_kv_cache_fraction"}',
    'dsr:kv_cache_tokens_total{model_name="tiny-v3"}',
    'dsr:kv_cache_memory_bytes{model_name="tiny-v3"}',
    "process_resident_memory_bytes",
]


@pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="needs Debian's prometheus package")
def test_prometheus_scrapes_vllm_series(server: ServerProcess, tmp_path: Path) -> None:
    for _ in range(2):
        httpx.post(
            server.url + "/v1/completions",
            timeout=60,
            json={
                "model": "tiny-v3",
                "prompt": "metrics please",
                "max_tokens": 4,
                "ignore_eos": True,
            },
        )
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: deepseek-runtime\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prom.log").open("wb"),
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query"
        missing = list(SERIES)
        deadline = time.monotonic() + 60
        while missing and time.monotonic() < deadline:
            time.sleep(1)
            still = []
            for query in missing:
                try:
                    data = httpx.get(api, params={"query": query}, timeout=5).json()
                except (httpx.HTTPError, ValueError):
                    still.append(query)
                    continue
                if data.get("status") != "success" or not data["data"]["result"]:
                    still.append(query)
            missing = still
        assert not missing, f"series not in Prometheus: {missing}"
        gen = httpx.get(
            api, params={"query": 'vllm:generation_tokens_total{model_name="tiny-v3"}'}
        ).json()
        assert float(gen["data"]["result"][0]["value"][1]) >= 8
        up = httpx.get(api, params={"query": 'up{job="deepseek-runtime"}'}).json()
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        prom.terminate()
        prom.wait(20)
