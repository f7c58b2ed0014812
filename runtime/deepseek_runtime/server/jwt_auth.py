"""Bearer JWT verification (``--jwt-jwks FILE_OR_URL --jwt-issuer ISS --jwt-audience AUD``).

A token is accepted when, in this order (the first failure names the check in the 401):

    malformed    three base64url parts with a JSON header
    algorithm    ``alg`` is RS256, ES256 or EdDSA and is the algorithm of the chosen key
                 (a token cannot pick HS256 or ``none``, nor use an RSA key as an HMAC one)
    unknown_key  the JWKS holds its ``kid`` (a key set of one key serves a token without)
    signature    the signature verifies (PyJWT)
    claims       ``exp``, ``iss`` and ``aud`` are present; ``exp``, ``nbf`` and ``iat`` hold
                 within ``--jwt-leeway-seconds``; ``iss`` and ``aud`` are the configured ones

Keys: a JWKS file is re-read when it changes (``server.watched_file``) and at once on an
unknown ``kid``. A JWKS URL is fetched at start (a failure is logged and retried, not
fatal: the identity provider may come up later), re-fetched every
``--jwt-jwks-refresh-seconds`` (so a removed key stops verifying) by a background thread,
and re-fetched on an unknown ``kid`` at most once per ``--jwt-jwks-min-refetch-seconds``
(so a stream of made-up ``kid``s cannot hammer the provider). That on-demand fetch blocks
the request for at most ``FETCH_TIMEOUT_S``: key rotation works on the first token signed
with a new key.

Used by ``server.auth``; raises :class:`TokenError`, which never carries the token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from .watched_file import WatchedFile

log = logging.getLogger("deepseek_runtime.server")

ALGORITHMS = ("RS256", "ES256", "EdDSA")
FETCH_TIMEOUT_S = 3.0
MAX_JWKS_BYTES = 1 << 20


class TokenError(Exception):
    """A rejected token: ``check`` is the failed check, ``message`` says why."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


def parse_jwks(data: bytes | str, origin: str) -> dict[str, jwt.PyJWK]:
    """Usable keys of a JWKS document by ``kid`` ("" for a key without); ValueError."""
    try:
        doc = json.loads(data)
        keys = jwt.PyJWKSet.from_dict(doc).keys if isinstance(doc, dict) else None
    except (ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"JWKS {origin}: {exc}") from None
    if keys is None:
        raise ValueError(f"JWKS {origin}: not a JSON object with a 'keys' list")
    return {k.key_id or "": k for k in keys}


def _read_file(path: Path) -> dict[str, jwt.PyJWK]:
    try:
        return parse_jwks(path.read_bytes(), str(path))
    except OSError as exc:
        raise ValueError(f"cannot read JWKS {path}: {exc.strerror}") from None


def fetch_url(url: str) -> bytes:
    """GET a JWKS (``JwksUrl`` allows http(s) URLs only), at most ``MAX_JWKS_BYTES``."""
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp:
        body: bytes = resp.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"JWKS {url} is larger than {MAX_JWKS_BYTES} bytes")
    return body


class JwksFile:
    """Keys from a file, hot-reloaded; an unknown kid looks at the file again at once."""

    def __init__(self, path: Path) -> None:
        self._watched = WatchedFile(path, _read_file, what="JWKS file")

    def keys(self) -> dict[str, jwt.PyJWK]:
        return self._watched.current()

    def refresh(self) -> bool:
        return self._watched.check()


class JwksUrl:
    """Keys fetched from a URL by a daemon thread: periodically and on demand."""

    def __init__(
        self,
        url: str,
        *,
        refresh_s: float,
        min_refetch_s: float,
        fetch: Callable[[str], bytes] = fetch_url,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"JWKS URL {url!r} must be http:// or https://")
        self.url = url
        self._refresh_s = refresh_s
        self._min_refetch_s = min_refetch_s
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._generation = 0
        self._fetch_once()
        threading.Thread(target=self._run, name="jwks-refresh", daemon=True).start()

    def keys(self) -> dict[str, jwt.PyJWK]:
        return self._keys

    def _fetch_once(self) -> None:
        self._fetched_at = self._clock()
        try:
            self._keys = parse_jwks(self._fetch(self.url), self.url)
            log.info("JWKS fetched", extra={"url": self.url, "keys": len(self._keys)})
        except (OSError, ValueError) as exc:
            log.error("JWKS fetch failed, keeping %d key(s): %s", len(self._keys), exc)
        with self._done:
            self._generation += 1
            self._done.notify_all()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._refresh_s)
            self._wake.clear()
            self._fetch_once()

    def refresh(self) -> bool:
        """Fetch now (unless fetched within the minimum interval); True once it is done."""
        if self._clock() - self._fetched_at < self._min_refetch_s:
            return False
        with self._done:
            generation = self._generation
            self._wake.set()
            return self._done.wait_for(
                lambda: self._generation != generation, timeout=FETCH_TIMEOUT_S
            )


@dataclass(frozen=True, slots=True)
class JwtSettings:
    jwks: str
    issuer: str
    audience: str
    leeway_s: float = 30.0
    refresh_s: float = 300.0
    min_refetch_s: float = 10.0


class JwtVerifier:
    """Verifies bearer JWTs against a JWKS; returns the claims or raises TokenError."""

    def __init__(self, settings: JwtSettings, keys: JwksFile | JwksUrl | None = None) -> None:
        self.settings = settings
        if keys is None:
            s = settings
            if s.jwks.startswith(("http://", "https://")):
                keys = JwksUrl(s.jwks, refresh_s=s.refresh_s, min_refetch_s=s.min_refetch_s)
            else:
                keys = JwksFile(Path(s.jwks))
        self._keys = keys

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        parts = token.split(".")
        return len(parts) == 3 and all(parts[:2]) and token.startswith("eyJ")

    def _key(self, kid: str | None) -> jwt.PyJWK | None:
        for attempt in range(2):
            keys = self._keys.keys()
            if kid is None:
                if len(keys) == 1:
                    return next(iter(keys.values()))
            elif kid in keys:
                return keys[kid]
            if attempt == 0 and not self._keys.refresh():
                return None
        return None

    def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed", "bearer token is not a well-formed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS:
            raise TokenError("algorithm", f"token algorithm must be one of {', '.join(ALGORITHMS)}")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("malformed", "token kid is not a string")
        key = self._key(kid)
        if key is None:
            raise TokenError("unknown_key", "no key of the JWKS matches the token's kid")
        if key.algorithm_name != alg:
            raise TokenError("algorithm", "token algorithm does not match its key's")
        s = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidSignatureError:
            raise TokenError("signature", "token signature does not verify") from None
        except jwt.ExpiredSignatureError:
            raise TokenError("expired", "token has expired (exp)") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("not_yet_valid", "token is not valid yet (nbf/iat)") from None
        except jwt.InvalidIssuerError:
            raise TokenError("issuer", "token issuer (iss) is not the expected one") from None
        except jwt.InvalidAudienceError:
            raise TokenError("audience", "token audience (aud) is not the expected one") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("claims", f"token lacks the {exc.claim!r} claim") from None
        except jwt.DecodeError:
            raise TokenError("malformed", "bearer token is not a well-formed JWT") from None
        except jwt.PyJWTError:
            raise TokenError("claims", "token claims are invalid") from None
        return claims
