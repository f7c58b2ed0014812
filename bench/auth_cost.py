"""What authentication, authorization, quotas and redaction cost per request, on CPU.

Run: ``.venv/bin/python bench/auth_cost.py [--n 2000]``.

Times, in one run and one process, the pieces every request passes when security is on:
``Authenticator.authenticate`` for an API key (SHA-256 + constant-time compare over 100
configured digests) and for a JWT of each algorithm (RS256 / ES256 / EdDSA; header parse,
key lookup, signature and claims checks), the roles lookup of a JWT's claims, one quota
admission + settle, and ``pii.redact`` on a 2 KB prompt with and without PII (the audit
line's cost with ``--log-prompts``). Prints one JSON object of microseconds per call;
the ratios against the API-key path are the figures to compare (no timed asserts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "runtime" / "server"))

from jwt_keys import AUDIENCE, ISSUER, jwks, new_key

from deepseek_runtime.server.auth import Authenticator, KeyStore
from deepseek_runtime.server.jwt_auth import JwtSettings, JwtVerifier
from deepseek_runtime.server.pii import redact
from deepseek_runtime.server.quotas import Limits, QuotaLimiter
from deepseek_runtime.server.roles import load_roles
from deepseek_runtime.server.watched_file import WatchedFile


def _per_call_us(fn: Callable[[], Any], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    keys = {alg: new_key(f"k-{alg}", alg) for alg in ("RS256", "ES256", "EdDSA")}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "jwks.json").write_text(jwks(*keys.values()))
        roles = {
            "roles": {"user": {"endpoints": ["chat"]}},
            "principals": [
                {"name": f"p{i}", "roles": ["user"], "match": {"subjects": [f"s{i}"]}}
                for i in range(50)
            ]
            + [
                {
                    "name": "keyed",
                    "roles": ["user"],
                    "api_key_sha256": [hashlib.sha256(b"sk-bench").hexdigest()],
                }
            ],
        }
        (d / "roles.json").write_text(json.dumps(roles))
        book = WatchedFile(d / "roles.json", lambda p: load_roles(p, Limits()), what="roles")
        verifier = JwtVerifier(JwtSettings(str(d / "jwks.json"), ISSUER, AUDIENCE))
        auth = Authenticator(KeyStore([f"sk-{i:04d}" for i in range(100)]), verifier, book)
        n = args.n
        out: dict[str, Any] = {"n": n, "us_per_call": {}}
        us = out["us_per_call"]
        us["api_key"] = _per_call_us(lambda: auth.authenticate("Bearer sk-bench", None), n)
        for alg, key in keys.items():
            token = key.mint({"sub": "s49"})  # the last principal: the longest roles scan
            us[f"jwt_{alg}"] = _per_call_us(
                lambda t=token: auth.authenticate(f"Bearer {t}", None), max(100, n // 10)
            )
        q, limits = QuotaLimiter(), Limits(rpm=10**9, tpm=10**9)

        def quota() -> None:
            _, r = q.admit("p", limits, 500)
            q.settle(r, limits, 300)

        us["quota_admit_settle"] = _per_call_us(quota, n)
        plain = ("The quick brown fox jumps over the lazy dog at 10:30 on 2026-03-17. " * 30)[:2048]
        pii = plain[:1900] + " mail bob@example.com, call 13812345678, card 4111111111111111"
        us["redact_2kb_plain"] = _per_call_us(lambda: redact(plain), max(100, n // 10))
        us["redact_2kb_with_pii"] = _per_call_us(lambda: redact(pii), max(100, n // 10))
        out["ratio_to_api_key"] = {
            k: round(v / us["api_key"], 2) for k, v in us.items() if k != "api_key"
        }
        out["us_per_call"] = {k: round(v, 1) for k, v in us.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
