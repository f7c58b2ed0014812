"""``spec.model.configRef``: the model's ``config.json`` from a ConfigMap (pure).

Models outside the built-in catalog are planned from the checkpoint's ``config.json``,
which the user stores in a ConfigMap of the DSD's namespace. The controller GETs that
ConfigMap (:func:`.reconcile.plan_pass`), and :func:`model_config_from` turns it into
the dict the planner reads, or a :class:`ModelConfigError` whose message says what to fix;
the pass then reports ``Planned=False`` with it. The kopf watch on ConfigMaps in
:mod:`.handlers` finds the DSDs to re-plan through :func:`config_map_key` (the key of the
``config_refs`` index), so an edited ConfigMap is planned again within seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from deepseek_operator.api.model import ConfigMapKeyReference

REASON_NOT_FOUND = "ModelConfigNotFound"
"""Condition reason: the referenced ConfigMap does not exist."""
REASON_INVALID = "InvalidModelConfig"
"""Condition reason: the key is missing, not JSON, or not a model config the planner reads."""


class ModelConfigError(ValueError):
    """The referenced ``config.json`` cannot be read; ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def config_map_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(namespace, ConfigMap name)`` a raw DSD body refers to, or None without configRef.

    Read from the raw body (before validation) so that even a DSD whose spec is invalid
    elsewhere is re-planned, and its message refreshed, when the ConfigMap appears.
    """
    meta = body.get("metadata") or {}
    model = (body.get("spec") or {}).get("model") or {}
    ref = model.get("configRef") if isinstance(model, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    if not isinstance(name, str) or not name:
        return None
    return str(meta.get("namespace") or "default"), name


def describe(ref: ConfigMapKeyReference, namespace: str) -> str:
    """``spec.model.configRef (ConfigMap <ns>/<name>, key <key>)``, for messages."""
    return f"spec.model.configRef (ConfigMap {namespace}/{ref.name}, key {ref.key})"


def model_config_from(
    config_map: Mapping[str, Any] | None, ref: ConfigMapKeyReference, namespace: str
) -> dict[str, Any]:
    """The parsed ``config.json`` held at ``ref`` in ``config_map``.

    Args:
        config_map: the live ConfigMap object, or None when it does not exist.
        ref: ``spec.model.configRef``.
        namespace: the DSD's namespace (where the ConfigMap must live).

    Raises:
        ModelConfigError: the ConfigMap is missing, lacks the key, or the value is not a
            JSON object; the message names the ConfigMap, the key and what to change.
    """
    where = describe(ref, namespace)
    if config_map is None:
        raise ModelConfigError(
            REASON_NOT_FOUND,
            f"{where}: the ConfigMap does not exist; create it with the checkpoint's "
            f"config.json under the key {ref.key!r}",
        )
    data = config_map.get("data") or {}
    if ref.key not in data:
        held = ", ".join(sorted(data)) or "no keys"
        raise ModelConfigError(
            REASON_INVALID,
            f"{where}: the ConfigMap has no key {ref.key!r} (it holds {held}); "
            "set configRef.key or add the key",
        )
    try:
        parsed = json.loads(data[ref.key])
    except json.JSONDecodeError as err:
        raise ModelConfigError(
            REASON_INVALID, f"{where}: not valid JSON (line {err.lineno}: {err.msg})"
        ) from None
    if not isinstance(parsed, dict):
        raise ModelConfigError(
            REASON_INVALID, f"{where}: expected a JSON object, got {type(parsed).__name__}"
        )
    return parsed
