"""Principals and roles: who a caller is, which endpoints and models it may use, its limits.

The roles file (``--auth-roles``, YAML or JSON, mounted from a Secret or ConfigMap and
hot-reloaded) is validated by :class:`RolesFile`::

    roles:
      chat-user:
        endpoints: [chat, completions, models, tokenize]   # or ["*"]
        models: ["deepseek-*"]                             # globs on the served name
        limits: {requests_per_minute: 60, tokens_per_minute: 20000}
      ops: {endpoints: [metrics, admin]}
    principals:
      - name: team-a
        roles: [chat-user]
        api_key_sha256: [<64 hex digits>]      # sha256 of a key: the file holds no secret
      - name: analysts
        roles: [chat-user]
        match: {groups: [analysts], claims: {tenant: acme}}   # JWT claims
        limits: {tokens_per_minute: 100000}                   # overrides the roles'
    default_roles: []          # for a valid key or token that no principal matches
    groups_claim: groups       # the JWT claim holding group names
    protect_metrics: false     # true: /metrics needs the ``metrics`` endpoint

A JWT matches a principal when every condition of its ``match`` holds (``sub`` in
``subjects``, any of ``groups``, each claim equal or, for a list claim, contained); the
first matching entry wins, and entries may share a name to say "or" (they then share the
name's quotas). Endpoints and models are the union over the roles; each limit is the
principal's own, else the most generous of its roles', else the server-wide default.

Pure (validation and lookup); loaded through ``server.watched_file`` by ``server.auth``.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .quotas import Limits

Endpoint = Literal["completions", "chat", "models", "tokenize", "v2", "metrics", "admin"]
EndpointOrAll = Endpoint | Literal["*"]
ENDPOINTS: frozenset[str] = frozenset(get_args(Endpoint))
INFERENCE_ENDPOINTS = frozenset({"completions", "chat", "models", "tokenize", "v2"})

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


def _default_endpoints() -> list[EndpointOrAll]:
    return ["completions", "chat", "models", "tokenize", "v2"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleLimits(_Strict):
    """Limits of a role or a principal; an unset field has no opinion."""

    requests_per_second: float | None = Field(None, gt=0)
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0)


class Role(_Strict):
    endpoints: list[EndpointOrAll] = Field(default_factory=_default_endpoints)
    models: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["*"])
    limits: RoleLimits = Field(default_factory=RoleLimits)


class Match(_Strict):
    """JWT conditions; every one given must hold."""

    subjects: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    claims: dict[str, str | int | bool] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.subjects or self.groups or self.claims)


class PrincipalEntry(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")
    roles: list[str] = Field(min_length=1)
    api_key_sha256: list[Sha256Hex] = Field(default_factory=list)
    match: Match = Field(default_factory=Match)
    limits: RoleLimits = Field(default_factory=RoleLimits)

    @model_validator(mode="after")
    def _matches_someone(self) -> PrincipalEntry:
        if not self.api_key_sha256 and self.match.empty:
            raise ValueError(f"principal {self.name!r} has no api_key_sha256 and no match")
        return self


class RolesFile(_Strict):
    roles: dict[str, Role] = Field(default_factory=dict)
    principals: list[PrincipalEntry] = Field(default_factory=list)
    default_roles: list[str] = Field(default_factory=list)
    groups_claim: str = Field("groups", min_length=1)
    protect_metrics: bool = False

    @model_validator(mode="after")
    def _references(self) -> RolesFile:
        for who, names in [("default_roles", self.default_roles)] + [
            (f"principal {p.name!r}", p.roles) for p in self.principals
        ]:
            unknown = sorted(set(names) - self.roles.keys())
            if unknown:
                raise ValueError(f"{who} names unknown role(s): {', '.join(unknown)}")
        seen: dict[str, str] = {}
        for p in self.principals:
            for digest in p.api_key_sha256:
                other = seen.setdefault(digest.lower(), p.name)
                if other != p.name:
                    raise ValueError(f"an api_key_sha256 is listed for {other!r} and {p.name!r}")
        return self


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the quota key ``name`` and what it may do."""

    name: str
    source: Literal["api_key", "jwt", "anonymous"]
    endpoints: frozenset[str]
    models: tuple[str, ...]
    limits: Limits
    roles: tuple[str, ...] = ()
    subject: str | None = None  # the JWT ``sub``, for the audit log
    key_id: str | None = None  # the API key's id (a digest prefix), for the audit log

    def may_call(self, endpoint: str) -> bool:
        return endpoint in self.endpoints

    def may_use(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


def full_access(
    name: str, source: Literal["api_key", "jwt", "anonymous"], limits: Limits, **extra: Any
) -> Principal:
    """A principal allowed everything (no roles file: any valid credential is trusted)."""
    return Principal(name, source, ENDPOINTS, ("*",), limits, **extra)


def _pick(values: list[float | None]) -> float | None:
    given = [v for v in values if v is not None]
    return max(given) if given else None


class RoleBook:
    """A validated roles file, indexed for lookups by key digest and by JWT claims."""

    def __init__(self, spec: RolesFile, defaults: Limits) -> None:
        self.spec = spec
        self._defaults = defaults
        self._by_digest = {bytes.fromhex(d): p for p in spec.principals for d in p.api_key_sha256}

    @property
    def key_digests(self) -> list[bytes]:
        return list(self._by_digest)

    @property
    def protect_metrics(self) -> bool:
        return self.spec.protect_metrics

    def _principal(
        self,
        name: str,
        source: Literal["api_key", "jwt"],
        role_names: list[str],
        own: RoleLimits,
        **extra: Any,
    ) -> Principal | None:
        if not role_names:
            return None
        roles = [self.spec.roles[r] for r in role_names]
        endpoints = {e for r in roles for e in r.endpoints}
        d = self._defaults

        def limit(field: str, default: float | None) -> float | None:
            mine = getattr(own, field)
            if mine is not None:
                return float(mine)
            return _pick([getattr(r.limits, field) for r in roles]) or default

        rpm, tpm = limit("requests_per_minute", d.rpm), limit("tokens_per_minute", d.tpm)
        limits = Limits(
            limit("requests_per_second", d.rps),
            None if rpm is None else int(rpm),
            None if tpm is None else int(tpm),
        )
        return Principal(
            name,
            source,
            ENDPOINTS if "*" in endpoints else frozenset(endpoints),
            tuple(dict.fromkeys(m for r in roles for m in r.models)),
            limits,
            tuple(role_names),
            **extra,
        )

    def for_key(self, digest: bytes, key_id: str) -> Principal | None:
        """The principal of an API key (its entry, else the default roles), None: no role."""
        entry = self._by_digest.get(digest)
        if entry is not None:
            return self._principal(entry.name, "api_key", entry.roles, entry.limits, key_id=key_id)
        return self._principal(
            f"key:{key_id}", "api_key", self.spec.default_roles, RoleLimits(), key_id=key_id
        )

    def for_claims(self, claims: Mapping[str, Any]) -> Principal | None:
        """The principal of verified JWT claims (first matching entry, else default roles)."""
        subject = str(claims.get("sub", ""))
        for entry in self.spec.principals:
            if not entry.match.empty and self._matches(entry.match, claims):
                return self._principal(
                    entry.name, "jwt", entry.roles, entry.limits, subject=subject
                )
        return self._principal(
            f"jwt:{subject}", "jwt", self.spec.default_roles, RoleLimits(), subject=subject
        )

    def _matches(self, match: Match, claims: Mapping[str, Any]) -> bool:
        if match.subjects and claims.get("sub") not in match.subjects:
            return False
        if match.groups:
            groups = claims.get(self.spec.groups_claim)
            held = set(groups) if isinstance(groups, list) else {groups}
            if not held & set(match.groups):
                return False
        for name, want in match.claims.items():
            have = claims.get(name)
            if not (have == want or (isinstance(have, list) and want in have)):
                return False
        return True


def load_roles(path: Path, defaults: Limits) -> RoleBook:
    """Read and validate a roles file; ValueError naming the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return RoleBook(RolesFile.model_validate(data or {}), defaults)
    except OSError as exc:
        raise ValueError(f"cannot read roles file {path}: {exc.strerror}") from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ValueError(f"roles file {path} does not parse: {exc}") from None
    except ValidationError as exc:
        raise ValueError(f"roles file {path} is invalid: {exc}") from None
