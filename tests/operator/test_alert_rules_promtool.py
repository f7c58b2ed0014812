"""Every alert the renderer emits, proven with ``promtool test rules``: firing and quiet.

The rules are the rendered PrometheusRule's groups, unchanged. The input series carry the
names and labels a scrape really yields: the runtime's ``/metrics`` (``http_requests_total``
with ``handler``/``method``/``status``, ``vllm:e2e_request_latency_seconds_bucket`` with the
runtime's own bucket bounds, ``dsr:kv_cache_fragmentation_perc``; ``model_name``) plus the
ServiceMonitor target labels (``namespace``, ``service``, ``pod``, ``container``,
``endpoint``, ``job``, ``deepseek_ai_track``...), and dcgm-exporter's
``DCGM_FI_DEV_GPU_UTIL`` scraped both with ``honorLabels: true`` (workload in
``namespace``/``pod``) and ``honorLabels: false`` (the exporter's own ``namespace``/``pod``
win, the workload moves to ``exported_namespace``/``exported_pod``). Each quiet case also
holds series of a neighbouring DSD (``r1-long``) that breach the threshold, so a selector
that leaked across DSDs would fire.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from dsd_factory import dsd

from deepseek_operator.render.monitoring import ALERTS, prometheus_rule
from deepseek_runtime.server.metrics import E2E_BUCKETS

pytestmark = pytest.mark.unit
PROMTOOL = Path("/usr/bin/promtool")
NS, NAME, MODEL = "serving", "r1", "deepseek-ai/DeepSeek-R1"
POD, OTHER_POD = "r1-5b4f6c7468-9v4mf", "r1-long-6d8f7c9b5d-x2k4p"
EVAL = "15m"  # every input series runs 20 one-minute samples; rules need 5m + for 5m


def _runtime_labels(pod: str = POD, service: str = NAME) -> dict[str, str]:
    """Target labels of the runtime, as the rendered ServiceMonitor's scrape yields them."""
    return {
        "namespace": NS,
        "service": service,
        "pod": pod,
        "container": "engine",
        "endpoint": "http",
        "job": service,
        "instance": "10.77.1.4:8000",
        "deepseek_ai_track": "stable",
        "deepseek_ai_revision": "b18c553eea",
        "model_name": MODEL,
    }


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


def _requests(
    ok_per_min: int, errors_per_min: int, pod: str = POD, svc: str = NAME
) -> list[dict[str, str]]:
    base = _runtime_labels(pod, svc) | {"handler": "/v1/chat/completions", "method": "POST"}
    base.pop("model_name")
    return [
        _series("http_requests_total", base | {"status": "200"}, f"0+{ok_per_min}x20"),
        _series("http_requests_total", base | {"status": "500"}, f"0+{errors_per_min}x20"),
    ]


def _latency(seconds: float, per_min: int, pod: str = POD, svc: str = NAME) -> list[dict[str, str]]:
    """Histogram buckets of requests that all took ``seconds``."""
    out = []
    for le in [
        *(f"{b:g}" if b < 1 or not b.is_integer() else f"{b:.1f}" for b in E2E_BUCKETS),
        "+Inf",
    ]:
        bound = float("inf") if le == "+Inf" else float(le)
        rate = per_min if seconds <= bound else 0
        labels = _runtime_labels(pod, svc) | {"le": le}
        out.append(_series("vllm:e2e_request_latency_seconds_bucket", labels, f"0+{rate}x20"))
    return out


def _fragmentation(value: float, pod: str = POD, svc: str = NAME) -> list[dict[str, str]]:
    return [_series("dsr:kv_cache_fragmentation_perc", _runtime_labels(pod, svc), f"{value}x20")]


def _dcgm(util: float, pod: str = POD, honor_labels: bool = True, gpu: str = "0") -> dict[str, str]:
    """One GPU's DCGM_FI_DEV_GPU_UTIL as dcgm-exporter's ServiceMonitor scrape yields it."""
    labels = {
        "gpu": gpu,
        "UUID": f"GPU-6f2a1c3e-0000-0000-0000-00000000000{gpu}",
        "device": f"nvidia{gpu}",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "gpu-h100-0",
        "DCGM_FI_DRIVER_VERSION": "550.54.15",
        "instance": "10.0.3.4:9400",
        "job": "nvidia-dcgm-exporter",
        "service": "nvidia-dcgm-exporter",
        "endpoint": "gpu-metrics",
    }
    workload = {"namespace": NS, "pod": pod, "container": "engine"}
    if honor_labels:
        labels |= workload
    else:
        labels |= {f"exported_{k}": v for k, v in workload.items()}
        labels |= {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-7xk2p"}
        labels["container"] = "nvidia-dcgm-exporter"
    return _series("DCGM_FI_DEV_GPU_UTIL", labels, f"{util}x20")


def _gpu_series(util: float, honor: bool) -> list[dict[str, str]]:
    return [_dcgm(util, honor_labels=honor, gpu="0"), _dcgm(util, honor_labels=honor, gpu="1")]


# alert -> (firing input series, quiet input series)
CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {
    "DeepSeekGPUSaturated": (
        _gpu_series(97, honor=True),
        [*_gpu_series(60, honor=True), _dcgm(99, pod=OTHER_POD)],
    ),
    "DeepSeekKVCacheFragmented": (
        _fragmentation(0.45),
        [*_fragmentation(0.1), *_fragmentation(0.9, OTHER_POD, "r1-long")],
    ),
    "DeepSeekHighLatencyP95": (
        _latency(0.9, 30),
        [*_latency(0.2, 30), *_latency(30.0, 30, OTHER_POD, "r1-long")],
    ),
    "DeepSeekHighErrorRate": (
        _requests(97, 3),
        [*_requests(1000, 2), *_requests(10, 10, OTHER_POD, "r1-long")],
    ),
    "DeepSeekCircuitOpen": (
        _requests(90, 10),
        [*_requests(97, 3), *_requests(10, 10, OTHER_POD, "r1-long")],
    ),
}


def _rules() -> dict[str, Any]:
    rule = prometheus_rule(dsd(NAME, NS, model={"name": MODEL}))
    assert rule is not None
    return dict(rule)


def _alert(groups: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for g in groups for r in g["rules"] if r["alert"] == name)


def _promtool(tmp_path: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> str:
    if not PROMTOOL.is_file():
        pytest.fail(f"{PROMTOOL} is missing: run `make system-deps` (Debian's prometheus)")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    doc = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
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
    return proc.stdout


def _case(
    alert: str, series: list[dict[str, str]], fires: bool, rule: dict[str, Any]
) -> dict[str, Any]:
    expected = (
        [{"exp_labels": dict(rule["labels"]), "exp_annotations": dict(rule["annotations"])}]
        if fires
        else []
    )
    return {
        "name": f"{alert} {'fires' if fires else 'stays quiet'}",
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": EVAL, "alertname": alert, "exp_alerts": expected}],
    }


def test_every_rendered_alert_has_a_case() -> None:
    groups = _rules()["spec"]["groups"]
    assert {r["alert"] for g in groups for r in g["rules"]} == set(ALERTS) == set(CASES)


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_fires_and_stays_quiet(alert: str, tmp_path: Path) -> None:
    groups = _rules()["spec"]["groups"]
    rule = _alert(groups, alert)
    firing, quiet = CASES[alert]
    out = _promtool(
        tmp_path, groups, [_case(alert, firing, True, rule), _case(alert, quiet, False, rule)]
    )
    assert "SUCCESS" in out


def test_gpu_alert_with_dcgm_scraped_without_honor_labels(tmp_path: Path) -> None:
    """``honorLabels: false``: the workload is only in ``exported_namespace``/``exported_pod``."""
    groups = _rules()["spec"]["groups"]
    alert = "DeepSeekGPUSaturated"
    rule = _alert(groups, alert)
    quiet = [*_gpu_series(60, honor=False), _dcgm(99, pod=OTHER_POD, honor_labels=False)]
    tests = [
        _case(alert, _gpu_series(97, honor=False), True, rule),
        _case(alert, quiet, False, rule),
    ]
    assert "SUCCESS" in _promtool(tmp_path, groups, tests)


def test_an_alert_that_should_fire_but_does_not_fails_promtool(tmp_path: Path) -> None:
    """The harness can fail: quiet data asserted to fire makes promtool exit non-zero."""
    groups = _rules()["spec"]["groups"]
    rule = _alert(groups, "DeepSeekHighErrorRate")
    with pytest.raises(AssertionError, match="FAILED"):
        _promtool(
            tmp_path, groups, [_case("DeepSeekHighErrorRate", _requests(1000, 0), True, rule)]
        )


def test_canary_error_rate_builtin_is_zero_without_5xx_and_no_data_without_traffic(
    tmp_path: Path,
) -> None:
    """The canary's built-in ``error-rate``: 0 % when a revision answered no 5xx at all (no
    ``status=~"5.."`` series exists), the share when it did, nothing when it served nothing."""
    from deepseek_operator.controllers.analysis import builtin_query  # noqa: PLC0415

    d = dsd(NAME, NS, model={"name": MODEL})
    query = builtin_query(d, "error-rate")
    canary = "r1-canary-7c9d8b6f4d-q8w2e"

    def only_ok(pod: str) -> list[dict[str, str]]:
        return [s for s in _requests(60, 0, pod) if 'status="500"' not in s["series"]]

    cases = [
        (only_ok(canary), [{"labels": "{}", "value": 0.0}]),
        (_requests(54, 6, canary), [{"labels": "{}", "value": 10.0}]),
        (_requests(54, 6, POD), []),  # stable pods only: the canary has no data
    ]
    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [{"expr": query, "eval_time": "10m", "exp_samples": samples}],
        }
        for series, samples in cases
    ]
    assert "SUCCESS" in _promtool(tmp_path, [], tests)
