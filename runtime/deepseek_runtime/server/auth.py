"""Authentication and authorization of a request: credentials → :class:`Principal` → allowed?

Credentials, tried in this order on ``Authorization: Bearer X`` (or ``x-api-key: X``):

1. an API key: from ``--api-keys-file`` (one per line, ``#`` comments, as mounted from a
   Kubernetes Secret), ``--api-keys``, or an ``api_key_sha256`` of the roles file. Only
   SHA-256 digests are kept; the presented key is hashed and compared against every
   digest with ``hmac.compare_digest``, so the time taken does not depend on which key
   (or how much of one) matched. A key's id in logs is the first 12 hex digits of its
   digest;
2. a JWT (``server.jwt_auth``) when ``--jwt-jwks`` is set and the value looks like one.

With no keys, no JWKS and no roles file the server is open (``anonymous``). Without a
roles file any valid credential may do everything; with one, the principal it maps to
(``server.roles``) must hold the endpoint and the served model.

Errors (RFC 6750): 401 with ``WWW-Authenticate: Bearer realm="deepseek-runtime"`` and, for a
bad token, ``error="invalid_token"`` and a description of the failed check; 403 with
``error="insufficient_scope"``. A body or header never contains the credential.

Called by ``server.state`` for every API request (HTTP and gRPC).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from pathlib import Path

from .config import ServerConfig
from .errors import APIError
from .jwt_auth import JwtSettings, JwtVerifier, TokenError
from .quotas import Limits
from .roles import Principal, RoleBook, full_access, load_roles
from .watched_file import WatchedFile

ANONYMOUS = "anonymous"
REALM = 'Bearer realm="deepseek-runtime"'

_PATH_ENDPOINTS = (
    ("/v1/completions", "completions"),
    ("/v1/chat/completions", "chat"),
    ("/v1/models", "models"),
    ("/tokenize", "tokenize"),
    ("/detokenize", "tokenize"),
    ("/v2/", "v2"),
    ("grpc/", "v2"),
    ("/metrics", "metrics"),
    ("/admin", "admin"),
    ("/v1/admin", "admin"),
)


_V2_PROBE = re.compile(r"^/v2(/health/(live|ready)|/models/[^/]+/ready)?$")


def endpoint_of(path: str) -> str | None:
    """The roles-file endpoint name of a route path (None: not guarded, as the probes and
    KServe v2's health, server-metadata and model-ready routes are not)."""
    if _V2_PROBE.match(path):
        return None
    for prefix, name in _PATH_ENDPOINTS:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return name
    return None


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id(digest: bytes) -> str:
    return digest.hex()[:12]


def read_keys(path: Path | None, inline: str | None) -> list[str]:
    """Keys from the file and the inline list; ValueError when the file is unreadable."""
    keys: list[str] = []
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read API keys file {path}: {exc.strerror}") from None
        keys += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if inline:
        keys += [k.strip() for k in inline.split(",") if k.strip()]
    return keys


class KeyStore:
    """Hashed API keys; ``enabled`` is False when none are configured (open server)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [key_digest(k) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def match(self, presented: str, extra: Iterable[bytes] = ()) -> bytes | None:
        """The digest of ``presented`` if it is a known key; constant time in which one."""
        candidate = key_digest(presented)
        found: bytes | None = None
        for digest in [*self._digests, *extra]:
            if hmac.compare_digest(candidate, digest):
                found = digest
        return found if presented else None

    def identify(self, presented: str | None) -> str | None:
        """The key id of a valid key, else None (``anonymous`` when no key is configured)."""
        if not self._digests:
            return ANONYMOUS
        digest = self.match(presented or "")
        return key_id(digest) if digest is not None else None


def unauthorized(check: str, message: str, *, token: bool) -> APIError:
    header = REALM
    if token:
        header += f', error="invalid_token", error_description="{message}"'
    return APIError(401, message, code=check, headers={"WWW-Authenticate": header})


def forbidden(code: str, message: str) -> APIError:
    header = f'{REALM}, error="insufficient_scope", error_description="{message}"'
    return APIError(403, message, code=code, headers={"WWW-Authenticate": header})


def presented_credential(authorization: str | None, api_key: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    if api_key and api_key.strip():
        return api_key.strip()
    return None


class Authenticator:
    """Keys, JWTs and roles together; ``authenticate`` → Principal, ``authorize`` → 403."""

    def __init__(
        self,
        keys: KeyStore,
        verifier: JwtVerifier | None = None,
        roles: WatchedFile[RoleBook] | None = None,
        defaults: Limits | None = None,
    ) -> None:
        self.keys = keys
        self.verifier = verifier
        self.roles = roles
        self.defaults = defaults or Limits()

    @classmethod
    def from_config(cls, config: ServerConfig) -> Authenticator:
        """Everything from the options; ValueError for an unreadable or invalid file."""
        defaults = Limits(rps=config.rate_limit_rps, tpm=config.rate_limit_tpm)
        verifier = None
        if config.jwt_jwks is not None:
            if config.jwt_issuer is None or config.jwt_audience is None:
                raise ValueError("--jwt-jwks needs --jwt-issuer and --jwt-audience")
            verifier = JwtVerifier(
                JwtSettings(
                    config.jwt_jwks,
                    config.jwt_issuer,
                    config.jwt_audience,
                    config.jwt_leeway_seconds,
                    config.jwt_jwks_refresh_seconds,
                    config.jwt_jwks_min_refetch_seconds,
                )
            )
        roles = None
        if config.auth_roles is not None:
            roles = WatchedFile(
                config.auth_roles, lambda p: load_roles(p, defaults), what="roles file"
            )
        keys = KeyStore(read_keys(config.api_keys_file, config.api_keys))
        return cls(keys, verifier, roles, defaults)

    @property
    def open(self) -> bool:
        return not (self.keys.enabled or self.verifier or self.roles)

    def book(self) -> RoleBook | None:
        return self.roles.current() if self.roles is not None else None

    def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The caller's principal; 401 (APIError) for a missing or bad credential."""
        if self.open:
            return full_access(ANONYMOUS, "anonymous", self.defaults)
        presented = presented_credential(authorization, api_key)
        if presented is None:
            raise unauthorized(
                "missing_credentials",
                "missing credentials: send an API key or a bearer token",
                token=False,
            )
        book = self.book()
        digest = self.keys.match(presented, book.key_digests if book else ())
        if digest is not None:
            kid = key_id(digest)
            if book is None:
                return full_access(f"key:{kid}", "api_key", self.defaults, key_id=kid)
            return self._mapped(book.for_key(digest, kid))
        if self.verifier is not None and self.verifier.looks_like_jwt(presented):
            try:
                claims = self.verifier.verify(presented)
            except TokenError as exc:
                raise unauthorized(f"token_{exc.check}", exc.message, token=True) from None
            subject = str(claims.get("sub", ""))
            if book is None:
                return full_access(f"jwt:{subject}", "jwt", self.defaults, subject=subject)
            return self._mapped(book.for_claims(claims))
        raise unauthorized(
            "invalid_api_key",
            "invalid API key" if self.verifier is None else "invalid API key or bearer token",
            token=True,
        )

    @staticmethod
    def _mapped(principal: Principal | None) -> Principal:
        if principal is None:
            raise forbidden("no_role", "credential is valid but maps to no principal with a role")
        return principal

    def authorize(self, principal: Principal, endpoint: str | None, model: str) -> None:
        """403 unless ``principal`` may call ``endpoint`` (when guarded) on ``model``."""
        if endpoint is not None and not principal.may_call(endpoint):
            raise forbidden(
                "endpoint_not_allowed",
                f"principal {principal.name!r} may not call the {endpoint} endpoints",
            )
        if endpoint not in {None, "metrics", "admin"} and not principal.may_use(model):
            raise forbidden(
                "model_not_allowed", f"principal {principal.name!r} may not use model {model!r}"
            )

    def metrics_guarded(self) -> bool:
        book = self.book()
        return book is not None and book.protect_metrics
