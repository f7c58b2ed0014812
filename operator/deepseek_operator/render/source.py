"""Where the engine finds the weights: volumes, mounts and the download init container.

==============  ===================================================================
source          pods get
==============  ===================================================================
``hf://o/r``    init container ``fetch-model`` (huggingface_hub ``snapshot_download``)
``s3://b/p``    init container ``fetch-model`` (rclone) into the model volume
``gs://b/p``    same, rclone's GCS backend
``pvc://c/p``   the claim mounted read-only; no download
``oci://ref``   an image volume (Kubernetes ``image`` volume source); no download
==============  ===================================================================

The model volume is the ``<name>-model-cache`` PVC when ``spec.model.cache`` is set,
else an emptyDir sized from the checkpoint. Pure; called by :mod:`.pod`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.planning.plan import Plan
from deepseek_operator.render.common import metadata

MODEL_ROOT: Final = "/models"
RCLONE_IMAGE: Final = "docker.io/rclone/rclone:1.68.2"
FETCH_HF: Final = (
    "import sys; from huggingface_hub import snapshot_download; "
    "snapshot_download(repo_id=sys.argv[1], revision=sys.argv[2] or None, local_dir=sys.argv[3])"
)


@dataclass
class ModelMount:
    """What the pod template needs to find the weights."""

    path: str
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    init_containers: list[dict[str, Any]] = field(default_factory=list)


def cache_claim_name(dsd: DeepSeekDeployment) -> str:
    """Name of the weight-cache PersistentVolumeClaim."""
    return f"{dsd.name}-model-cache"


def _gib(n: int) -> str:
    return f"{-(-n // 1024**3)}Gi"


def _secret_env(
    dsd: DeepSeekDeployment, variable: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ref = dsd.spec.model.source.secret_ref
    if ref is None:
        return [], []
    if ref.key:
        return [
            {"name": variable, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        ], []
    return [], [{"secretRef": {"name": ref.name}}]


def model_mount(
    dsd: DeepSeekDeployment, plan: Plan, security: dict[str, Any], resources: dict[str, Any]
) -> ModelMount:
    """Volumes, mounts, init container and in-pod path of the model for this DSD."""
    uri = dsd.spec.model.source.uri
    scheme, rest = uri.split("://", 1)
    if scheme == "pvc":
        claim, _, sub = rest.partition("/")
        return ModelMount(
            path=f"{MODEL_ROOT}/{sub}".rstrip("/"),
            volumes=[
                {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            ],
            mounts=[{"name": "model", "mountPath": MODEL_ROOT, "readOnly": True}],
        )
    if scheme == "oci":
        return ModelMount(
            path=MODEL_ROOT,
            volumes=[{"name": "model", "image": {"reference": rest, "pullPolicy": "IfNotPresent"}}],
            mounts=[{"name": "model", "mountPath": MODEL_ROOT, "readOnly": True}],
        )
    local = f"{MODEL_ROOT}/{rest.strip('/').rsplit('/', 1)[-1]}"
    if dsd.spec.model.cache is not None:
        volume: dict[str, Any] = {
            "name": "model",
            "persistentVolumeClaim": {"claimName": cache_claim_name(dsd)},
        }
    else:
        size = int(plan.checkpoint_bytes * 1.1)
        volume = {"name": "model", "emptyDir": {"sizeLimit": _gib(size)}}
    mount = {"name": "model", "mountPath": MODEL_ROOT}
    if scheme == "hf":
        env, env_from = _secret_env(dsd, "HF_TOKEN")
        fetch: dict[str, Any] = {
            "name": "fetch-model",
            "image": "",  # filled by the pod builder with the engine image
            "command": [
                "python3",
                "-c",
                FETCH_HF,
                rest,
                dsd.spec.model.source.revision or "",
                local,
            ],
            "env": [
                {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "0"},
                {"name": "HF_HOME", "value": f"{MODEL_ROOT}/.hf"},
                *env,
            ],
        }
    else:
        backend = "s3" if scheme == "s3" else "gcs"
        ref = dsd.spec.model.source.secret_ref  # AWS_* / GOOGLE_* keys, read by env auth
        env, env_from = [], ([{"secretRef": {"name": ref.name}}] if ref else [])
        fetch = {
            "name": "fetch-model",
            "image": RCLONE_IMAGE,
            "command": [
                "rclone",
                "copy",
                "--transfers",
                "16",
                f"--{backend}-env-auth",
                f":{backend}:{rest}",
                local,
            ],
            "env": [{"name": "RCLONE_CONFIG", "value": "/tmp/rclone.conf"}, *env],
        }
    if env_from:
        fetch["envFrom"] = env_from
    fetch["resources"] = resources
    fetch["securityContext"] = security
    fetch["volumeMounts"] = [mount, {"name": "tmp", "mountPath": "/tmp"}]
    return ModelMount(path=local, volumes=[volume], mounts=[mount], init_containers=[fetch])


def cache_claim(dsd: DeepSeekDeployment) -> dict[str, Any] | None:
    """The weight-cache PVC, when ``spec.model.cache`` is set."""
    cache = dsd.spec.model.cache
    if cache is None or dsd.spec.model.source.uri.startswith(("pvc://", "oci://")):
        return None
    spec: dict[str, Any] = {
        "accessModes": [cache.access_mode],
        "resources": {"requests": {"storage": cache.size}},
    }
    if cache.storage_class_name:
        spec["storageClassName"] = cache.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(dsd, cache_claim_name(dsd), "model-cache"),
        "spec": spec,
    }
