"""Test identity provider: generated RS256 / ES256 / EdDSA keys, their JWKS, minted tokens.

Keys are made with ``cryptography`` on the spot and tokens signed with PyJWT, the way an
OIDC provider would; the server under test only ever sees the public JWKS.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://idp.test.example"
AUDIENCE = "deepseek-runtime"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def mint(self, claims: dict[str, Any] | None = None, **headers: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        body.update(claims or {})
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(
            body, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers}
        )


def new_key(kid: str, alg: str = "RS256") -> SigningKey:
    if alg == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(alg)
    return SigningKey(kid, alg, private)


def jwks(*keys: SigningKey) -> str:
    return json.dumps({"keys": [k.public_jwk() for k in keys]})
