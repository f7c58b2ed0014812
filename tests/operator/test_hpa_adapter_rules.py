"""``provider: hpa``: the rendered HPA's Pods metrics are what prometheus-adapter would serve.

No custom-metrics adapter can be built here (the Go module proxy refuses
``sigs.k8s.io/prometheus-adapter`` and the other Prometheus adapters tried; KEDA's adapter
serves only external metrics: docs/testing-live.md), so this test applies
prometheus-adapter's documented rule semantics (``seriesQuery`` discovery,
``resources.overrides``, ``name.matches``/``as``, the ``metricsQuery`` template with
``<<.Series>>``, ``<<.LabelMatchers>>``, ``<<.GroupBy>>``) to :data:`ADAPTER_RULES`, the
adapter config the HPA needs (also in docs/testing-live.md), and checks:

- every metric name the rendered HPA asks for is served by exactly one rule, discovered
  from a series the runtime (or dcgm-exporter) really exposes, with ``namespace``/``pod``
  labels as the ServiceMonitor scrape adds them;
- the rule's query, rendered the way the adapter renders it for the HPA's pods, returns one
  value per pod of the DSD and nothing for a neighbouring DSD: evaluated by ``promtool``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dsd_factory import H100, dsd, inventory, pool
from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.planning import plan_deployment
from deepseek_operator.render.autoscaling import HPA_METRICS, autoscaler
from deepseek_runtime.engine.api import EngineStats
from deepseek_runtime.server.metrics import ServerMetrics

pytestmark = pytest.mark.unit
PROMTOOL = Path("/usr/bin/promtool")
NS = "serving"
PODS = ("r1-5b4f6c7468-9v4mf", "r1-5b4f6c7468-k2x7q")
OTHER = "r1-long-6d8f7c9b5d-x2k4p"

_SUM = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"
ADAPTER_RULES: list[dict[str, Any]] = [
    {  # gauges of the runtime: vllm:num_requests_waiting -> vllm_num_requests_waiting
        "seriesQuery": '{__name__=~"^vllm:(num_requests_waiting|kv_cache_usage_perc)$",'
        'namespace!="",pod!=""}',
        "resources": {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        },
        "name": {"matches": "^vllm:(.*)$", "as": "vllm_${1}"},
        "metricsQuery": _SUM,
    },
    {
        "seriesQuery": '{__name__="vllm:time_to_first_token_seconds_bucket",namespace!="",pod!=""}',
        "resources": {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        },
        "name": {
            "matches": "^vllm:time_to_first_token_seconds_bucket$",
            "as": "vllm_time_to_first_token_p95",
        },
        "metricsQuery": "histogram_quantile(0.95, sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) "
        "by (le, <<.GroupBy>>))",
    },
    {  # dcgm-exporter scraped with honorLabels: true (the workload's namespace/pod)
        "seriesQuery": '{__name__="DCGM_FI_DEV_GPU_UTIL",namespace!="",pod!=""}',
        "resources": {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        },
        "name": {"matches": "^DCGM_FI_DEV_GPU_UTIL$", "as": "DCGM_FI_DEV_GPU_UTIL"},
        "metricsQuery": "avg(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    },
]


def _runtime_series() -> dict[str, dict[str, str]]:
    """Sample name -> labels of a runtime's real ``/metrics``, plus the scrape's target labels."""
    stats = EngineStats(1, 3, 0.4, 0, 0, 0, 100, 60)
    metrics = ServerMetrics("deepseek-ai/DeepSeek-R1", lambda: stats)
    metrics.ttft.observe(0.2)
    out: dict[str, dict[str, str]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out.setdefault(sample.name, dict(sample.labels))
    out["DCGM_FI_DEV_GPU_UTIL"] = {"gpu": "0", "modelName": "NVIDIA H100 80GB HBM3"}
    return out


def _discovers(rule: dict[str, Any], name: str, labels: dict[str, str]) -> bool:
    """Does ``seriesQuery`` select a series ``name{labels}``? (the matchers used above)"""
    query = rule["seriesQuery"]
    if m := re.search(r'__name__=~"([^"]+)"', query):
        if not re.fullmatch(m.group(1), name):
            return False
    elif (m := re.search(r'__name__="([^"]+)"', query)) and m.group(1) != name:
        return False
    required = re.findall(r'(\w+)!=""', query)
    return all(labels.get(k) for k in required)


def _served(series: dict[str, dict[str, str]]) -> dict[str, tuple[dict[str, Any], str]]:
    """Custom metric name -> (rule, series name), as the adapter's discovery would list."""
    scraped = {"namespace": NS, "pod": PODS[0], "service": "r1"}
    served: dict[str, tuple[dict[str, Any], str]] = {}
    for rule in ADAPTER_RULES:
        for name, labels in series.items():
            if _discovers(rule, name, labels | scraped):
                pattern, alias = rule["name"]["matches"], rule["name"]["as"]
                metric = re.sub(pattern, re.sub(r"\$\{(\d+)\}", r"\\\1", alias), name)
                assert metric not in served, f"{metric} served twice"
                served[metric] = (rule, name)
    return served


def _metrics_query(rule: dict[str, Any], series: str) -> str:
    pods = "|".join(PODS)
    return (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", f'namespace="{NS}",pod=~"{pods}"')
        .replace("<<.GroupBy>>", "pod")
    )


def _hpa_metric_names() -> list[str]:
    d = dsd(
        "r1",
        NS,
        model={"name": "deepseek-ai/DeepSeek-R1"},
        autoscaling={
            "provider": "hpa",
            "metrics": [{"type": t, "target": 1} for t in HPA_METRICS],
        },
    )
    hpa = autoscaler(d, plan_deployment(d.spec, inventory(pool(H100, 4))))
    assert hpa is not None and hpa["kind"] == "HorizontalPodAutoscaler"
    names = []
    for m in hpa["spec"]["metrics"]:
        assert m["type"] == "Pods" and m["pods"]["target"]["type"] == "AverageValue", m
        names.append(m["pods"]["metric"]["name"])
    return names


def test_every_hpa_metric_is_served_by_one_adapter_rule() -> None:
    served = _served(_runtime_series())
    names = _hpa_metric_names()
    assert sorted(names) == sorted(HPA_METRICS.values())
    missing = [n for n in names if n not in served]
    assert not missing, f"no adapter rule serves {missing}; served: {sorted(served)}"


def _bucket_series(pod: str) -> list[dict[str, str]]:
    name, labels = "vllm:time_to_first_token_seconds_bucket", f'namespace="{NS}",pod="{pod}"'
    return [
        {"series": f'{name}{{{labels},le="{le}"}}', "values": f"0+{rate}x10"}
        for le, rate in (("0.1", 0), ("0.25", 30), ("0.5", 60), ("+Inf", 60))
    ]


def test_adapter_queries_return_one_value_per_dsd_pod(tmp_path: Path) -> None:
    if not PROMTOOL.is_file():
        pytest.fail(f"{PROMTOOL} is missing: run `make system-deps`")
    served = _served(_runtime_series())
    inputs: list[dict[str, str]] = []
    for pod in (*PODS, OTHER):
        base = f'namespace="{NS}",pod="{pod}",model_name="deepseek-ai/DeepSeek-R1"'
        inputs.append({"series": f"vllm:num_requests_waiting{{{base}}}", "values": "3x10"})
        inputs.append({"series": f"vllm:kv_cache_usage_perc{{{base}}}", "values": "0.4x10"})
        inputs.append({"series": f'DCGM_FI_DEV_GPU_UTIL{{{base},gpu="0"}}', "values": "80x10"})
        inputs += _bucket_series(pod)
    expected = {
        "vllm_num_requests_waiting": 3.0,
        "vllm_kv_cache_usage_perc": 0.4,
        "DCGM_FI_DEV_GPU_UTIL": 80.0,
        "vllm_time_to_first_token_p95": 0.475,
    }
    tests = []
    for metric in _hpa_metric_names():
        rule, series = served[metric]
        tests.append(
            {
                "expr": _metrics_query(rule, series),
                "eval_time": "5m",
                "exp_samples": [
                    {"labels": f'{{pod="{p}"}}', "value": expected[metric]} for p in PODS
                ],
            }
        )
    doc = {"tests": [{"interval": "1m", "input_series": inputs, "promql_expr_test": tests}]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run(
        [str(PROMTOOL), "test", "rules", "tests.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
