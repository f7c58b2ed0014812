"""E2E: ``spec.serving.auth`` JWT and roles fields against the real apiserver and operator.

The apiserver rejects what the CEL rules forbid (``jwt`` without exactly one JWKS source;
JWT or roles with an engine that is not deepseek-runtime) with the rules' messages; a
valid DSD plans and its Deployment's pod mounts the JWKS Secret and the roles ConfigMap
and passes the runtime the matching ``DSR_*`` settings.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from e2e.operator_harness import Kube, OperatorProcess, children, dsd, wait_for

pytestmark = pytest.mark.e2e
DISTILL_7B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
JWT = {
    "issuer": "https://idp.example",
    "audience": "deepseek-api",
    "jwksSecretRef": {"name": "idp-jwks"},
}


def _auth(name: str, auth: dict[str, Any], kind: str = "native") -> dict[str, Any]:
    obj = dsd(name, DISTILL_7B, products=["L40S"], engine={"kind": kind})
    obj["spec"]["serving"] = {"auth": copy.deepcopy(auth)}
    return obj


REJECTED = {
    "no-jwks": (
        _auth("no-jwks", {"jwt": {"issuer": "i", "audience": "a"}}),
        "exactly one of jwksSecretRef and jwksUri",
    ),
    "two-jwks": (
        _auth("two-jwks", {"jwt": {**JWT, "jwksUri": "https://idp.example/jwks"}}),
        "exactly one of jwksSecretRef and jwksUri",
    ),
    "jwt-on-vllm": (_auth("jwt-on-vllm", {"jwt": JWT}, "vllm"), "enforced by deepseek-runtime"),
    "roles-on-auto": (
        _auth("roles-on-auto", {"rolesRef": {"name": "r"}}, "auto"),
        "enforced by deepseek-runtime",
    ),
}


def test_auth_fields_are_validated_and_rendered(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    for name, (manifest, words) in REJECTED.items():
        proc = kube.apply(manifest, namespace, check=False)
        assert proc.returncode != 0, f"{name}: the apiserver accepted it"
        assert words in proc.stderr, f"{name}: {words!r} not in {proc.stderr!r}"

    kube.apply(
        _auth("secured", {"jwt": JWT, "rolesRef": {"name": "api-roles", "key": "roles.yaml"}}),
        namespace,
    )

    def deployment() -> dict[str, Any] | None:
        found = [c for c in children(kube, namespace, "secured") if c["kind"] == "Deployment"]
        return found[0] if found else None

    pod = wait_for("the secured Deployment", deployment, 90)["spec"]["template"]["spec"]
    engine = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["DSR_JWT_JWKS"] == "/etc/deepseek/jwks/jwks.json"
    assert env["DSR_JWT_ISSUER"] == "https://idp.example"
    assert env["DSR_JWT_AUDIENCE"] == "deepseek-api"
    assert env["DSR_AUTH_ROLES"] == "/etc/deepseek/roles/roles.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["jwks"]["secret"]["secretName"] == "idp-jwks"
    assert volumes["auth-roles"]["configMap"]["name"] == "api-roles"
    mounts = {m["name"]: m["mountPath"] for m in engine["volumeMounts"]}
    assert mounts["jwks"] == "/etc/deepseek/jwks"
    assert mounts["auth-roles"] == "/etc/deepseek/roles"
