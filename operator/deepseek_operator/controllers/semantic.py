"""Semantic comparison of a desired child object with its live copy (pure).

The reconciler calls :func:`needs_apply` before each server-side apply so that a
no-op resync sends no write at all.  The live object carries server defaults
(``protocol: TCP``, ``revisionHistoryLimit``…), canonicalised quantities
(``1024Mi`` becomes ``1Gi``) and bookkeeping (``managedFields``, ``status``), so a
plain equality check would always fail.  Instead the desired object must be a
*subset* of the live one: every field we set is present with an equal value.

Fields we stop setting are caught by :data:`HASH_ANNOTATION`: the reconciler
stamps a digest of the whole desired object on every child, so any change to the
desired object - removals included - changes the digest and forces an apply.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import Any

HASH_ANNOTATION = "deepseek.ai/applied-hash"
"""Annotation holding :func:`digest` of the desired object last applied."""

_QUANTITY_KEYS = frozenset({"requests", "limits", "sizeLimit", "storage", "capacity"})
_IGNORED_TOP_LEVEL = frozenset({"status"})
_IGNORED_METADATA = frozenset(
    {"managedFields", "resourceVersion", "uid", "generation", "creationTimestamp"}
)

_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


def parse_quantity(value: object) -> Decimal | None:
    """Return a Kubernetes quantity as a Decimal, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str) or not value:
        return None
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and value.endswith(suffix):
            number, factor = value[: -len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, factor = value, Decimal(1)
    try:
        return Decimal(number) * factor
    except InvalidOperation:
        return None


def digest(obj: dict[str, Any]) -> str:
    """A stable short digest of ``obj`` without the hash annotation itself."""
    clean = json.loads(json.dumps(obj, sort_keys=True, default=str))
    meta = clean.get("metadata", {})
    annotations = meta.get("annotations") or {}
    annotations.pop(HASH_ANNOTATION, None)
    if not annotations:
        meta.pop("annotations", None)
    blob = json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def stamp(obj: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``obj`` with :data:`HASH_ANNOTATION` set to its digest."""
    out: dict[str, Any] = json.loads(json.dumps(obj, default=str))
    meta = out.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    annotations[HASH_ANNOTATION] = digest(obj)
    meta["annotations"] = annotations
    return out


def _is_empty(value: object) -> bool:
    return value is None or value in ({}, [])


def is_subset(desired: object, live: object, *, quantity: bool = False) -> bool:
    """True when every field of ``desired`` is present and equal in ``live``.

    Args:
        desired: the value we would apply.
        live: the value the apiserver holds.
        quantity: compare scalars as Kubernetes quantities (set under resources).
    """
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return _is_empty(desired) and _is_empty(live)
        for key, want in desired.items():
            if key not in live:
                if _is_empty(want):
                    continue
                return False
            if not is_subset(want, live[key], quantity=quantity or key in _QUANTITY_KEYS):
                return False
        return True
    if isinstance(desired, list):
        if not isinstance(live, list):
            return _is_empty(desired) and _is_empty(live)
        if len(desired) != len(live):
            return False
        return all(is_subset(d, lv, quantity=quantity) for d, lv in zip(desired, live, strict=True))
    if desired == live:
        return True
    if quantity:
        left, right = parse_quantity(desired), parse_quantity(live)
        return left is not None and left == right
    return False


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """True when ``desired`` (already stamped) must be applied over ``live``."""
    if live is None:
        return True
    meta = {k: v for k, v in desired.get("metadata", {}).items() if k not in _IGNORED_METADATA}
    body = {k: v for k, v in desired.items() if k not in _IGNORED_TOP_LEVEL and k != "metadata"}
    return not (is_subset(meta, live.get("metadata", {})) and is_subset(body, live))
