"""Renderer properties: ownership, labels, GPUs, security, probes, workloads, canary."""

from __future__ import annotations

from typing import Any

import pytest
from dsd_factory import H100, H200, L40S, dsd, inventory, pool

from deepseek_operator.api import DeepSeekDeployment, defaults
from deepseek_operator.planning import plan_deployment
from deepseek_operator.render import canary_active, endpoint, render_children, selector_string

pytestmark = pytest.mark.unit

QWEN_7B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def _render(d: DeepSeekDeployment, *pools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    canary = d.status.canary if d.status is not None else None  # the recorded rollout state
    return render_children(d, plan_deployment(d.spec, inventory(*pools)), canary)


def _kinds(objs: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objs]


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _pod_specs(workload: dict[str, Any]) -> list[dict[str, Any]]:
    if workload["kind"] == "Deployment":
        return [workload["spec"]["template"]["spec"]]
    t = workload["spec"]["leaderWorkerTemplate"]
    return [t["leaderTemplate"]["spec"], t["workerTemplate"]["spec"]]


def test_every_child_is_owned_labelled_and_ordered() -> None:
    d = dsd(
        model_name=QWEN_7B,
        placement={"gpu": {"products": ["L40S"]}},
        autoscaling={},
        model={"cache": {"size": "40Gi"}},
    )
    objs = _render(d)
    assert _kinds(objs) == [
        "PersistentVolumeClaim",
        "Service",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ]
    for o in objs:
        meta = o["metadata"]
        assert meta["namespace"] == "serving"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "deepseek-operator"
        assert meta["labels"]["deepseek.ai/deployment"] == "r1"
        (owner,) = meta["ownerReferences"]
        assert owner["controller"] is True and owner["uid"] == d.metadata.uid
        assert owner["kind"] == "DeepSeekDeployment" and owner["name"] == "r1"
        assert len(meta["name"]) <= 63
    assert objs == _render(d)  # deterministic


def test_single_node_replicas_are_deployments_with_gpus_and_restricted_pods() -> None:
    d = dsd(
        engine={"kind": "vllm"},
        placement={"tolerations": [{"key": "team", "operator": "Exists", "effect": "NoSchedule"}]},
        replicas=3,
    )
    (deploy,) = _by_kind(_render(d, pool(H200, 2)), "Deployment")
    assert deploy["spec"]["replicas"] == 3
    (pod,) = _pod_specs(deploy)
    (engine,) = pod["containers"]
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert engine["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "team"}
    for c in [*pod["containers"], *pod.get("initContainers", [])]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
        assert sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert "emptyDir" in volumes["model"]  # no cache: an ephemeral model volume
    assert engine["livenessProbe"]["periodSeconds"] == 30
    assert engine["livenessProbe"]["failureThreshold"] == 3
    startup = engine["startupProbe"]
    # 627 GiB of FP8 weights: 10 min + 34 min of loading, in 10 s probes
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600 + 60 * 34
    args = engine["args"]
    for flag, value in (
        ("--tensor-parallel-size", "8"),
        ("--pipeline-parallel-size", "1"),
        ("--max-model-len", "32768"),
        ("--kv-cache-dtype", "auto"),
        ("--gpu-memory-utilization", "0.9"),
    ):
        assert args[args.index(flag) + 1] == value
    assert "--enable-expert-parallel" in args
    assert engine["command"] == ["vllm", "serve"]


def test_multi_node_replicas_are_leader_worker_sets() -> None:
    d = dsd(autoscaling={"minReplicas": 1, "maxReplicas": 2})
    objs = _render(d, pool(H100, 4))
    (lws,) = _by_kind(objs, "LeaderWorkerSet")
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    assert lws["metadata"]["name"] == "r1-lws"
    assert "replicas" not in lws["spec"]  # the HPA owns the count
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    leader, worker = _pod_specs(lws)
    assert "readinessProbe" in leader["containers"][0]
    assert "readinessProbe" not in worker["containers"][0]
    for pod in (leader, worker):
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert pod["containers"][0]["image"] == defaults.VLLM_IMAGE
    # engine.kind auto: the native engine serves one GPU per replica, so vLLM serves this
    assert "exec vllm serve" in leader["containers"][0]["args"][0]
    (hpa,) = _by_kind(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": "r1-lws",
    }


def test_multi_node_vllm_uses_ray_under_lws() -> None:
    d = dsd(engine={"kind": "vllm"})
    (lws,) = _by_kind(_render(d, pool(H100, 4)), "LeaderWorkerSet")
    leader, worker = _pod_specs(lws)
    assert "ray start --head" in leader["containers"][0]["args"][0]
    assert "--pipeline-parallel-size 2" in leader["containers"][0]["args"][0]
    assert "--distributed-executor-backend ray" in leader["containers"][0]["args"][0]
    assert worker["containers"][0]["args"] == [
        "ray start --address=$LWS_LEADER_ADDRESS:6379 --block"
    ]


def test_services_select_serving_pods() -> None:
    d = dsd(model_name=QWEN_7B)
    headless, api = _by_kind(_render(d, pool(L40S, 1)), "Service")
    assert api["spec"]["selector"] == {"deepseek.ai/deployment": "r1", "deepseek.ai/role": "server"}
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert selector_string(d) == (
        "deepseek.ai/deployment=r1,deepseek.ai/track=stable,deepseek.ai/role=server"
    )
    assert endpoint(d) == "http://r1.serving.svc.cluster.local/v1"


def test_keda_scaled_object_queries_vllm_metrics() -> None:
    d = dsd(
        model_name=QWEN_7B,
        autoscaling={
            "provider": "keda",
            "minReplicas": 0,
            "metrics": [
                {"type": "QueueDepth", "target": 3},
                {"type": "KVCacheUsage", "target": 0.75},
            ],
        },
    )
    (so,) = _by_kind(_render(d, pool(L40S, 1)), "ScaledObject")
    assert so["spec"]["minReplicaCount"] == 0
    queries = [t["metadata"]["query"] for t in so["spec"]["triggers"]]
    assert queries[0].startswith("sum(vllm:num_requests_waiting{")
    assert queries[1].startswith("avg(vllm:kv_cache_usage_perc{")
    assert [t["metadata"]["threshold"] for t in so["spec"]["triggers"]] == ["3", "0.75"]


def test_canary_split_and_workloads() -> None:
    fields = {
        "model_name": QWEN_7B,
        "rollout": {"strategy": "Canary"},
        "traffic": {"istio": {}},
        "replicas": 4,
    }
    quiet = dsd(**fields)
    objs = _render(quiet, pool(L40S, 2))
    assert [o["metadata"]["name"] for o in _by_kind(objs, "Deployment")] == ["r1"]
    (vs,) = _by_kind(objs, "VirtualService")
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [100, 0]
    (dr,) = _by_kind(objs, "DestinationRule")
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["stable", "canary"]
    assert dr["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"] == 5

    running = quiet.model_copy(deep=True)
    running.status = (
        type(running)
        .model_validate(
            {
                **quiet.model_dump(by_alias=True, exclude_none=True),
                "status": {"canary": {"phase": "Progressing", "weight": 25, "revision": "abc"}},
            }
        )
        .status
    )
    assert running.status is not None
    assert canary_active(running, running.status.canary)
    objs = _render(running, pool(L40S, 2))
    (canary,) = _by_kind(objs, "Deployment")
    assert canary["metadata"]["name"] == "r1-canary"
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"]["deepseek.ai/track"] == "canary"
    (vs,) = _by_kind(objs, "VirtualService")
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [75, 25]


def test_optional_children_can_be_turned_off() -> None:
    d = dsd(
        model_name=QWEN_7B,
        traffic={"networkPolicy": {"enabled": False}},
        monitoring={"serviceMonitor": {"enabled": False}, "alerts": {"enabled": False}},
    )
    assert _kinds(_render(d, pool(L40S, 1))) == [
        "Service",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    ]


def test_alert_rules_use_spec_thresholds_and_runbooks() -> None:
    d = dsd(
        model_name=QWEN_7B,
        monitoring={"alerts": {"thresholds": {"gpuUtilizationPercent": 85, "errorRatePercent": 2}}},
    )
    (rule,) = _by_kind(_render(d, pool(L40S, 1)), "PrometheusRule")
    rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert rules["DeepSeekGPUSaturated"]["expr"].endswith("> 85")
    assert rules["DeepSeekGPUSaturated"]["for"] == "5m"
    assert rules["DeepSeekHighErrorRate"]["expr"].endswith("> 2")
    assert rules["DeepSeekHighLatencyP95"]["expr"].endswith("> 0.5")
    assert rules["DeepSeekCircuitOpen"]["labels"]["severity"] == "critical"
    for name, r in rules.items():
        assert r["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{name}.md")


def test_model_sources() -> None:
    pvc = dsd(model_name=QWEN_7B, model={"source": {"uri": "pvc://weights/qwen"}})
    (deploy,) = _by_kind(_render(pvc, pool(L40S, 1)), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    model = next(v for v in pod["volumes"] if v["name"] == "model")
    assert model["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}
    assert pod["containers"][0]["args"][:2] == ["--model", "/models/qwen"]
    hf = dsd(
        model_name=QWEN_7B,
        model={
            "source": {
                "uri": "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
                "revision": "abc123",
                "secretRef": {"name": "hf", "key": "token"},
            }
        },
    )
    (deploy,) = _by_kind(_render(hf, pool(L40S, 1)), "Deployment")
    (fetch,) = deploy["spec"]["template"]["spec"]["initContainers"]
    assert fetch["command"][-3:] == [
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "abc123",
        "/models/DeepSeek-R1-Distill-Qwen-7B",
    ]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in (
        fetch["env"]
    )


def test_native_env_names_are_runtime_options() -> None:
    from deepseek_runtime.server.config import ENV_PREFIX, ServerConfig  # noqa: PLC0415

    d = dsd(
        model_name=QWEN_7B,
        model={"quantization": "fp8"},
        engine={"kind": "triton", "tritonURL": "triton.serving:8001"},
        serving={
            "auth": {"apiKeysSecretRef": {"name": "keys"}},
            "rateLimit": {"requestsPerSecond": 5, "tokensPerMinute": 1000},
            "contentFilter": {"configMapRef": {"name": "policy"}},
        },
    )
    (deploy,) = _by_kind(_render(d, pool(L40S, 1)), "Deployment")
    engine = deploy["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in engine["env"] if e["name"].startswith(ENV_PREFIX)}
    known = {ENV_PREFIX + f.upper() for f in ServerConfig.model_fields}
    assert names <= known, names - known
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["DSR_CONTENT_FILTER"] == "/etc/deepseek/filter/policy.yaml"
    assert env["DSR_API_KEYS_FILE"] == "/etc/deepseek/auth/api-keys"
    assert env["DSR_TRITON_URL"] == "triton.serving:8001"
    assert env["DSR_QUANTIZATION"] == "fp8"
    options = engine["args"]
    assert options[options.index("--engine") + 1] == "triton"
