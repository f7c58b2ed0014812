"""Autoscalers: an ``autoscaling/v2`` HorizontalPodAutoscaler or a KEDA ScaledObject.

Both scale the stable workload on the engine's vLLM-compatible metrics:

==============  ==================================  =================================
metric type     HPA Pods metric (prometheus-adapter) KEDA Prometheus query
==============  ==================================  =================================
QueueDepth      vllm_num_requests_waiting           sum(vllm:num_requests_waiting)
KVCacheUsage    vllm_kv_cache_usage_perc            avg(vllm:kv_cache_usage_perc)
TTFT            vllm_time_to_first_token_p95        p95 of vllm:time_to_first_token_seconds
GPUUtilization  DCGM_FI_DEV_GPU_UTIL                avg(DCGM_FI_DEV_GPU_UTIL)
==============  ==================================  =================================

Pure; called by :func:`deepseek_operator.render.render_children`.
"""

from __future__ import annotations

from typing import Any, Final

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.api.scaling import ScalingMetric
from deepseek_operator.planning.plan import Plan
from deepseek_operator.render.common import metadata, workload_name
from deepseek_operator.render.monitoring import gpu_utilization

HPA_METRICS: Final = {
    "QueueDepth": "vllm_num_requests_waiting",
    "KVCacheUsage": "vllm_kv_cache_usage_perc",
    "TTFT": "vllm_time_to_first_token_p95",
    "GPUUtilization": "DCGM_FI_DEV_GPU_UTIL",
}


def quantity(value: float) -> str:
    """A Kubernetes quantity for a metric target: ``5``, ``800m``."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def _target_ref(dsd: DeepSeekDeployment, plan: Plan) -> dict[str, str]:
    if plan.multi_node:
        return {
            "apiVersion": "leaderworkerset.x-k8s.io/v1",
            "kind": "LeaderWorkerSet",
            "name": workload_name(dsd, multi_node=True),
        }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload_name(dsd)}


def _selector(dsd: DeepSeekDeployment) -> str:
    return f'namespace="{dsd.namespace}",service="{dsd.name}"'


def keda_query(dsd: DeepSeekDeployment, metric: ScalingMetric) -> tuple[str, str]:
    """(PromQL query, KEDA metricType) of one scaling metric."""
    sel = _selector(dsd)
    if metric.type == "QueueDepth":
        return f"sum(vllm:num_requests_waiting{{{sel}}})", "AverageValue"
    if metric.type == "KVCacheUsage":
        return f"avg(vllm:kv_cache_usage_perc{{{sel}}})", "Value"
    if metric.type == "TTFT":
        return (
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[2m])))",
            "Value",
        )
    return f"avg({gpu_utilization(dsd)})", "Value"


def _behavior(dsd: DeepSeekDeployment) -> dict[str, Any]:
    a = dsd.spec.autoscaling
    window = a.scale_down_stabilization_seconds if a else 300
    # One replica removed per period; a short stabilization window asks for a quicker
    # scale-down, so the period follows it (15-120 s).
    period = min(120, max(15, window))
    return {
        "scaleDown": {
            "stabilizationWindowSeconds": window,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": period}],
        },
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
        },
    }


def autoscaler(dsd: DeepSeekDeployment, plan: Plan) -> dict[str, Any] | None:
    """The HPA or ScaledObject, when ``spec.autoscaling`` is set (none for ``native``)."""
    a = dsd.spec.autoscaling
    if a is None or a.provider == "native":  # native: the operator writes the scale itself
        return None
    if a.provider == "hpa":
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(dsd, dsd.name, "autoscaler"),
            "spec": {
                "scaleTargetRef": _target_ref(dsd, plan),
                "minReplicas": max(1, a.min_replicas),
                "maxReplicas": a.max_replicas,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": HPA_METRICS[m.type]},
                            "target": {"type": "AverageValue", "averageValue": quantity(m.target)},
                        },
                    }
                    for m in a.metrics
                ],
                "behavior": _behavior(dsd),
            },
        }
    triggers = []
    for m in a.metrics:
        query, metric_type = keda_query(dsd, m)
        triggers.append(
            {
                "type": "prometheus",
                "name": m.type.lower(),
                "metricType": metric_type,
                "metadata": {
                    "serverAddress": dsd.spec.monitoring.prometheus_address,
                    "query": query,
                    "threshold": f"{m.target:g}",
                },
            }
        )
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(dsd, dsd.name, "autoscaler"),
        "spec": {
            "scaleTargetRef": _target_ref(dsd, plan),
            "minReplicaCount": a.min_replicas,
            "maxReplicaCount": a.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": a.scale_down_stabilization_seconds,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(dsd)}},
            "triggers": triggers,
        },
    }
