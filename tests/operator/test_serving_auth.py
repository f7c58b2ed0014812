"""``spec.serving.auth`` JWT and roles fields: validation, rendering, and what the runtime
makes of the rendered pod (its env read by the runtime's own ServerConfig and
Authenticator, with the mounted files re-rooted under a temporary directory)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from dsd_factory import L40S, dsd, inventory, pool
from pydantic import ValidationError

from deepseek_operator.api import DeepSeekDeployment
from deepseek_operator.planning import plan_deployment
from deepseek_operator.render import render_children

pytestmark = pytest.mark.unit

QWEN_7B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
ISS, AUD = "https://idp.example", "deepseek-api"
JWT_SECRET = {"issuer": ISS, "audience": AUD, "jwksSecretRef": {"name": "idp-jwks"}}
ROLES_REF = {"kind": "Secret", "name": "api-roles", "key": "roles.json"}


def _dsd(auth: dict[str, Any], kind: str = "native") -> DeepSeekDeployment:
    return dsd(model_name=QWEN_7B, engine={"kind": kind}, serving={"auth": auth})


def _engine_pod(d: DeepSeekDeployment) -> tuple[dict[str, Any], dict[str, Any]]:
    objs = render_children(d, plan_deployment(d.spec, inventory(pool(L40S, 1))), None)
    (deploy,) = [o for o in objs if o["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


@pytest.mark.parametrize(
    ("auth", "kind", "message"),
    [
        ({"jwt": {"issuer": ISS, "audience": AUD}}, "native", "exactly one of jwksSecretRef"),
        (
            {"jwt": {**JWT_SECRET, "jwksUri": "https://idp.example/jwks"}},
            "native",
            "exactly one of jwksSecretRef",
        ),
        ({"jwt": {**JWT_SECRET, "jwksSecretRef": None, "jwksUri": "ftp://x"}}, "native", "pattern"),
        ({"rolesRef": {"name": "r"}}, "vllm", "enforced by deepseek-runtime"),
        ({"jwt": JWT_SECRET}, "auto", "enforced by deepseek-runtime"),
        ({"rolesRef": {"kind": "Pod", "name": "r"}}, "native", "ConfigMap"),
    ],
)
def test_invalid_auth_specs(auth: dict[str, Any], kind: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _dsd(auth, kind)


def test_jwks_secret_and_roles_are_mounted_and_passed() -> None:
    pod, engine = _engine_pod(_dsd({"jwt": JWT_SECRET, "rolesRef": ROLES_REF}))
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["DSR_JWT_JWKS"] == "/etc/deepseek/jwks/jwks.json"
    assert (env["DSR_JWT_ISSUER"], env["DSR_JWT_AUDIENCE"]) == (ISS, AUD)
    assert env["DSR_AUTH_ROLES"] == "/etc/deepseek/roles/roles.json"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["jwks"]["secret"] == {
        "secretName": "idp-jwks",
        "items": [{"key": "jwks.json", "path": "jwks.json"}],
    }
    assert volumes["auth-roles"]["secret"] == {
        "secretName": "api-roles",
        "items": [{"key": "roles.json", "path": "roles.json"}],
    }
    mounts = {m["name"]: m for m in engine["volumeMounts"]}
    assert mounts["jwks"] == {"name": "jwks", "mountPath": "/etc/deepseek/jwks", "readOnly": True}
    assert mounts["auth-roles"]["mountPath"] == "/etc/deepseek/roles"
    assert all("subPath" not in m for m in engine["volumeMounts"])  # updates must reach the pod


def test_jwks_uri_and_configmap_roles() -> None:
    auth = {
        "jwt": {"issuer": ISS, "audience": AUD, "jwksUri": "https://idp.example/jwks"},
        "rolesRef": {"name": "api-roles"},
    }
    pod, engine = _engine_pod(_dsd(auth, "triton"))
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["DSR_JWT_JWKS"] == "https://idp.example/jwks"
    assert env["DSR_AUTH_ROLES"] == "/etc/deepseek/roles/roles.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "jwks" not in volumes
    assert volumes["auth-roles"]["configMap"]["name"] == "api-roles"


def test_no_auth_renders_nothing_new() -> None:
    pod, engine = _engine_pod(_dsd({}))
    names = {e["name"] for e in engine["env"]}
    assert not names & {"DSR_JWT_JWKS", "DSR_JWT_ISSUER", "DSR_JWT_AUDIENCE", "DSR_AUTH_ROLES"}
    assert not {v["name"] for v in pod["volumes"]} & {"jwks", "auth-roles"}


def test_the_runtime_enforces_what_the_pod_is_rendered_with(tmp_path: Path) -> None:
    """The rendered env, read by the runtime's ServerConfig, authenticates a real token."""
    from deepseek_runtime.server.auth import Authenticator  # noqa: PLC0415
    from deepseek_runtime.server.config import ENV_PREFIX, ServerConfig  # noqa: PLC0415
    from deepseek_runtime.server.errors import APIError  # noqa: PLC0415

    _, engine = _engine_pod(_dsd({"jwt": JWT_SECRET, "rolesRef": ROLES_REF}))
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(jwt.get_algorithm_by_name("ES256").to_jwk(key.public_key()))
    files = {
        "/etc/deepseek/jwks/jwks.json": json.dumps({"keys": [{**public, "kid": "k1"}]}),
        "/etc/deepseek/roles/roles.json": json.dumps(
            {
                "roles": {"chat": {"endpoints": ["chat"]}},
                "principals": [
                    {"name": "team", "roles": ["chat"], "match": {"groups": ["team"]}},
                    {
                        "name": "svc",
                        "roles": ["chat"],
                        "api_key_sha256": [hashlib.sha256(b"k").hexdigest()],
                    },
                ],
            }
        ),
    }
    for path, text in files.items():
        (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path.lstrip("/")).write_text(text)
    values: dict[str, Any] = {"model": str(tmp_path)}
    for e in engine["env"]:
        name, value = e["name"], e.get("value")
        if name.startswith(ENV_PREFIX) and value is not None:
            field = name.removeprefix(ENV_PREFIX).lower()
            if field in ServerConfig.model_fields:
                values[field] = str(tmp_path) + value if value.startswith("/etc/") else value
    auth = Authenticator.from_config(ServerConfig.model_validate(values))
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "u1", "groups": ["team"], "exp": now + 60}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
    principal = auth.authenticate(f"Bearer {token}", None)
    assert principal.name == "team" and principal.may_call("chat")
    assert auth.authenticate(None, "k").name == "svc"
    with pytest.raises(APIError) as err:
        auth.authorize(principal, "completions", "m")
    assert err.value.status == 403
