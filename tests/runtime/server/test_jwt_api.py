"""JWTs, principals, roles and per-principal quotas on a real server, with the openai client.

The identity provider is a real HTTP server in this process publishing a JWKS of generated
RS256 / ES256 / EdDSA keys (``jwt_keys.py``); tokens are minted with PyJWT. The runtime is
``deepseek-runtime serve --jwt-jwks URL --jwt-issuer --jwt-audience --auth-roles FILE``
serving a tiny checkpoint on loopback, with an audit log.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from jwt_keys import AUDIENCE, ISSUER, SigningKey, jwks, new_key
from server_harness import ServerProcess

pytestmark = [pytest.mark.slow]

KEY_BATCH = "sk-batch-0123456789abcdef"  # listed in the roles file by its sha256
KEY_PLAIN = "sk-plain-0123456789abcdef"  # in --api-keys only: default roles (none) → 403
REALM = 'Bearer realm="deepseek-runtime"'

ROLES: dict[str, Any] = {
    "roles": {
        "chatter": {"endpoints": ["chat", "models", "tokenize"]},
        "completer": {"endpoints": ["completions", "models"]},
        "few-requests": {"endpoints": ["completions"], "limits": {"requests_per_minute": 2}},
        "few-tokens": {"endpoints": ["completions"], "limits": {"tokens_per_minute": 240}},
        "elsewhere": {"endpoints": ["chat"], "models": ["other-*"]},
        "ops": {"endpoints": ["metrics"]},
    },
    "principals": [
        {"name": "alice", "roles": ["chatter", "completer"], "match": {"subjects": ["alice"]}},
        {"name": "rpm-user", "roles": ["few-requests"], "match": {"subjects": ["rpm"]}},
        {"name": "tpm-user", "roles": ["few-tokens"], "match": {"subjects": ["tpm"]}},
        {"name": "mallory", "roles": ["elsewhere"], "match": {"subjects": ["mallory"]}},
        {"name": "prometheus", "roles": ["ops"], "match": {"groups": ["monitoring"]}},
        {
            "name": "batch",
            "roles": ["completer"],
            "api_key_sha256": [hashlib.sha256(KEY_BATCH.encode()).hexdigest()],
        },
    ],
    "protect_metrics": True,
}


class _Jwks(http.server.BaseHTTPRequestHandler):
    doc = b"{}"
    fetches = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.doc)))
        self.end_headers()
        self.wfile.write(self.doc)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Env:
    proc: ServerProcess
    keys: dict[str, SigningKey]
    audit: Path
    roles: Path
    idp: type[_Jwks]

    def client(self, credential: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.proc.url + "/v1", api_key=credential, max_retries=0)

    def token(self, sub: str = "alice", alg: str = "RS256", **claims: Any) -> str:
        return self.keys[alg].mint({"sub": sub, **claims})

    def post(self, path: str, body: dict[str, Any], credential: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        return httpx.post(self.proc.url + path, json=body, headers=headers, timeout=60)

    def audit_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit.read_text().splitlines()]


@pytest.fixture(scope="module")
def env(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d = tmp_path_factory.mktemp("jwt")
    keys = {alg: new_key(f"kid-{alg}", alg) for alg in ("RS256", "ES256", "EdDSA")}
    handler = type("Jwks", (_Jwks,), {"doc": jwks(*keys.values()).encode(), "fetches": 0})
    idp = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=idp.serve_forever, daemon=True).start()
    (d / "roles.yaml").write_text(yaml.safe_dump(ROLES))
    proc = ServerProcess(
        tiny_model,
        args=[
            "--jwt-jwks",
            f"http://127.0.0.1:{idp.server_address[1]}/jwks.json",
            "--jwt-issuer",
            ISSUER,
            "--jwt-audience",
            AUDIENCE,
            "--jwt-jwks-min-refetch-seconds",
            "0",
            "--auth-roles",
            str(d / "roles.yaml"),
            "--api-keys",
            KEY_PLAIN,
            "--audit-log",
            str(d / "audit.jsonl"),
        ],
    )
    proc.start(d)
    yield Env(proc, keys, d / "audit.jsonl", d / "roles.yaml", handler)
    proc.stop()
    idp.shutdown()


def test_tokens_of_each_algorithm_work_with_the_openai_client(env: Env) -> None:
    for alg in ("RS256", "ES256", "EdDSA"):
        client = env.client(env.token(alg=alg))
        assert client.models.list().data[0].id == "tiny-v3"
        r = client.chat.completions.create(
            model="tiny-v3", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert r.usage is not None and r.usage.completion_tokens >= 1


def _expect(r: httpx.Response, status: int, code: str, credential: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    if credential:
        assert credential not in r.text and credential not in str(r.headers)


def test_401_names_the_failed_check(env: Env) -> None:
    body = {"model": "tiny-v3", "prompt": "a", "max_tokens": 1}
    r = env.post("/v1/completions", body, None)
    _expect(r, 401, "missing_credentials")
    assert r.headers["www-authenticate"] == REALM
    assert r.json()["error"]["type"] == "authentication_error"
    impostor = SigningKey("kid-RS256", "RS256", new_key("x").private)
    now = int(time.time())
    cases = {
        "token_expired": env.token(exp=now - 120),
        "token_not_yet_valid": env.token(nbf=now + 120),
        "token_issuer": env.token(iss="https://evil.example"),
        "token_audience": env.token(aud="another-service"),
        "token_signature": impostor.mint({"sub": "alice"}),
        "token_unknown_key": new_key("kid-unpublished", "ES256").mint(),
        "token_malformed": "eyJhbGciOiJSUzI1NiJ9.eyJzdWI.not-base64!",
        "invalid_api_key": "sk-not-a-key",
    }
    for code, credential in cases.items():
        r = env.post("/v1/completions", body, credential)
        _expect(r, 401, code, credential)
        header = r.headers["www-authenticate"]
        assert header.startswith(REALM + ', error="invalid_token", error_description="'), header
    with pytest.raises(openai.AuthenticationError):
        env.client(cases["token_expired"]).models.list()


def test_403_for_a_valid_principal_lacking_permission(env: Env) -> None:
    v2 = {"text_input": "hi", "parameters": {"max_tokens": 1}}
    r = env.post("/v2/models/tiny-v3/generate", v2, env.token("alice"))
    _expect(r, 403, "endpoint_not_allowed")
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    with pytest.raises(openai.PermissionDeniedError) as err:
        env.client(env.token("mallory")).chat.completions.create(
            model="tiny-v3", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert err.value.body["code"] == "model_not_allowed"  # type: ignore[index]
    r = env.post("/v1/completions", {"model": "tiny-v3", "prompt": "a"}, env.token("nobody"))
    _expect(r, 403, "no_role")
    # API keys: one the roles file names (its principal), one only --api-keys knows
    batch = env.client(KEY_BATCH)
    assert batch.completions.create(model="tiny-v3", prompt="a", max_tokens=1).choices
    with pytest.raises(openai.PermissionDeniedError):
        batch.chat.completions.create(
            model="tiny-v3", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    _expect(env.post("/v1/completions", {"model": "tiny-v3"}, KEY_PLAIN), 403, "no_role")


def test_metrics_need_the_metrics_endpoint_when_protected(env: Env) -> None:
    url = env.proc.url + "/metrics"
    assert httpx.get(url).status_code == 401
    auth = {"Authorization": f"Bearer {env.token('alice')}"}
    assert httpx.get(url, headers=auth).status_code == 403
    scraper = {"Authorization": f"Bearer {env.token('scraper', groups=['monitoring'])}"}
    r = httpx.get(url, headers=scraper)
    assert r.status_code == 200 and "vllm:num_requests_running" in r.text
    for probe in ("/ready", "/health", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(env.proc.url + probe).status_code == 200, probe  # probes stay open
    assert httpx.get(env.proc.url + "/v2/models/tiny-v3/ready").status_code == 200
    assert httpx.get(env.proc.url + "/v2/models/tiny-v3").status_code == 401  # metadata: v2


def test_requests_per_minute_429_with_retry_after(env: Env) -> None:
    token = env.token("rpm")
    body = {"model": "tiny-v3", "prompt": "a", "max_tokens": 1}
    assert [env.post("/v1/completions", body, token).status_code for _ in range(2)] == [200, 200]
    r = env.post("/v1/completions", body, token)
    _expect(r, 429, "rate_limit_exceeded")
    assert 10 <= int(r.headers["retry-after"]) <= 30  # 1 request per 30 s (minus refill)
    with pytest.raises(openai.RateLimitError):
        env.client(token).completions.create(model="tiny-v3", prompt="a", max_tokens=1)
    # another principal has its own buckets
    assert env.post("/v1/completions", body, env.token("alice")).status_code == 200


def test_tokens_per_minute_reserve_the_estimate_then_settle_actual_usage(env: Env) -> None:
    prompt = [11, 12, 13, 14]  # 4 prompt tokens
    probe = env.post(
        "/v1/completions",
        {
            "model": "tiny-v3",
            "prompt": prompt,
            "max_tokens": 8,
            "temperature": 0,
            "ignore_eos": True,
        },
        env.token("alice"),
    ).json()["choices"][0]["text"]
    assert probe, "the greedy continuation decodes to text"
    token = env.token("tpm")  # 240 tokens/min: 4 per second
    # A reserves 4 + 200 = 204 of 240 but stops after its first token: 199 come back
    a = env.post(
        "/v1/completions",
        {
            "model": "tiny-v3",
            "prompt": prompt,
            "max_tokens": 200,
            "temperature": 0,
            "ignore_eos": True,
            "stop": [probe[0]],
        },
        token,
    )
    assert a.status_code == 200, a.text
    assert a.json()["usage"]["completion_tokens"] <= 2
    # B reserves 204 again: admitted only because A was settled by its actual usage
    full = {"model": "tiny-v3", "prompt": prompt, "max_tokens": 200, "ignore_eos": True}
    b = env.post("/v1/completions", full, token)
    assert b.status_code == 200, b.text
    assert b.json()["usage"]["total_tokens"] == 204
    c = env.post("/v1/completions", full, token)
    _expect(c, 429, "rate_limit_exceeded")
    assert int(c.headers["retry-after"]) >= 1  # ~40 s less what refilled while B ran


def test_jwks_rotation_on_an_unknown_kid(env: Env) -> None:
    rotated = new_key("kid-2027", "ES256")
    fetches = env.idp.fetches
    env.idp.doc = jwks(*env.keys.values(), rotated).encode()  # the provider rotates
    client = env.client(rotated.mint({"sub": "alice"}))
    assert client.models.list().data[0].id == "tiny-v3"  # re-fetched on the first use
    assert env.idp.fetches == fetches + 1
    assert client.models.list().data  # known now: no further fetch
    assert env.idp.fetches == fetches + 1


def test_roles_file_hot_reload_keeps_the_last_good_version(env: Env) -> None:
    chat = {"model": "tiny-v3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    mallory = env.token("mallory")
    _expect(env.post("/v1/chat/completions", chat, mallory), 403, "model_not_allowed")
    granted = json.loads(json.dumps(ROLES))
    granted["roles"]["elsewhere"]["models"] = ["tiny-*"]
    env.roles.write_text(yaml.safe_dump(granted))
    time.sleep(1.2)  # the file is polled at most once a second
    assert env.post("/v1/chat/completions", chat, mallory).status_code == 200
    env.roles.write_text("roles: [this is not valid\n")
    time.sleep(1.2)
    assert env.post("/v1/chat/completions", chat, mallory).status_code == 200
    assert "roles file reload failed" in env.proc.log()
    env.roles.write_text(yaml.safe_dump(ROLES))
    time.sleep(1.2)
    _expect(env.post("/v1/chat/completions", chat, mallory), 403, "model_not_allowed")


def test_every_request_writes_one_audit_line(env: Env) -> None:
    before = len(env.audit_lines())
    body = {"model": "tiny-v3", "prompt": "mail me at bob@example.com", "max_tokens": 2}
    alice = env.token("alice", alg="EdDSA")
    expired = env.token(exp=int(time.time()) - 120)
    statuses = [
        env.post("/v1/completions", body, alice).status_code,
        env.post("/v1/completions", body, expired).status_code,
        env.post("/v2/models/tiny-v3/generate", {"text_input": "x"}, alice).status_code,
        httpx.get(
            env.proc.url + "/v1/models", headers={"Authorization": f"Bearer {alice}"}
        ).status_code,
    ]
    assert statuses == [200, 401, 403, 200]
    new = env.audit_lines()[before:]
    assert [e["status"] for e in new] == statuses
    ok, unauthenticated, forbidden, models = new
    assert ok["principal"] == "alice" and ok["subject"] == "alice" and ok["key_id"] is None
    assert ok["endpoint"] == "/v1/completions" and ok["model"] == "tiny-v3"
    assert ok["prompt_tokens"] > 0 and ok["completion_tokens"] == 2 and ok["latency_ms"] > 0
    assert ok["request_id"].startswith("cmpl-") and "prompt" not in ok  # prompts off by default
    assert unauthenticated["principal"] is None
    assert forbidden["principal"] == "alice" and models["endpoint"] == "/v1/models"
    text = env.audit.read_text()
    assert alice not in text and expired not in text and "bob@example.com" not in text
    assert alice not in env.proc.log()
