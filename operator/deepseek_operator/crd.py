"""Generate the DeepSeekDeployment CustomResourceDefinition from the pydantic models.

Walks the spec and status models' type annotations (not pydantic's JSON Schema, which
uses ``$ref`` and ``anyOf``) and emits a *structural* OpenAPI v3 schema as the apiserver
wants it: every node typed, no references, ``x-kubernetes-int-or-string`` for ``int | str``,
``x-kubernetes-preserve-unknown-fields`` only for verbatim core/v1 pass-through objects
(``placement.affinity``), field docstrings as ``description`` (so ``kubectl explain``
teaches), defaults, enums, bounds, and the CEL rules from :mod:`deepseek_operator.api.validation`.

Called by the CLI (``deepseek-operator crd``), by ``scripts``/tests that keep
``crds/deepseek.ai_deepseekdeployments.yaml`` in sync, and by the e2e setup.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from deepseek_operator.api import resource
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.api.status import DeepSeekDeploymentStatus
from deepseek_operator.api.validation import ROOT_RULES

CRD_FILE = "deepseek.ai_deepseekdeployments.yaml"
REGENERATE_COMMAND = "deepseek-operator crd > crds/deepseek.ai_deepseekdeployments.yaml"

Schema = dict[str, Any]
_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _constraints(schema: Schema, metadata: list[Any], kind: str) -> None:
    """Apply annotated_types / pydantic constraints to ``schema`` of the given JSON type."""
    size = {
        "string": ("minLength", "maxLength"),
        "array": ("minItems", "maxItems"),
        "object": ("minProperties", "maxProperties"),
    }.get(kind)
    for m in metadata:
        if isinstance(m, FieldInfo):
            _constraints(schema, list(m.metadata), kind)
        elif isinstance(m, at.Ge):
            schema["minimum"] = m.ge
        elif isinstance(m, at.Gt):
            schema["minimum"], schema["exclusiveMinimum"] = m.gt, True
        elif isinstance(m, at.Le):
            schema["maximum"] = m.le
        elif isinstance(m, at.Lt):
            schema["maximum"], schema["exclusiveMaximum"] = m.lt, True
        elif isinstance(m, at.MinLen) and size:
            schema[size[0]] = m.min_length
        elif isinstance(m, at.MaxLen) and size:
            schema[size[1]] = m.max_length
        elif getattr(m, "pattern", None):
            schema["pattern"] = m.pattern


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` and ``X | None``; return the bare type and its metadata."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp, *extra = get_args(tp)
            metadata.extend(extra)
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
            return tp, metadata
        else:
            return tp, metadata


def type_schema(tp: Any, metadata: list[Any] | None = None) -> Schema:
    """Return the structural schema of a Python type annotation."""
    tp, inner = _unwrap(tp)
    metadata = [*(metadata or []), *inner]
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return model_schema(tp)
    if tp in _SCALARS:
        kind = _SCALARS[tp]
        schema: Schema = {"type": kind}
        if tp is float:
            kind = "number"
        _constraints(schema, metadata, kind)
        return schema
    if origin is Literal:
        values = list(get_args(tp))
        return {"type": _SCALARS[type(values[0])], "enum": values}
    if origin in (Union, types.UnionType):
        bare = {(_unwrap(a)[0]) for a in get_args(tp)}
        if bare == {int, str}:
            return {"x-kubernetes-int-or-string": True}
        raise TypeError(f"unsupported union for a structural schema: {tp}")
    if origin is list:
        (item,) = get_args(tp)
        schema = {"type": "array", "items": type_schema(item)}
        _constraints(schema, metadata, "array")
        return schema
    if origin is dict:
        _, value = get_args(tp)
        if value is Any:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        schema = {"type": "object", "additionalProperties": type_schema(value)}
        _constraints(schema, metadata, "object")
        return schema
    raise TypeError(f"unsupported type for a structural schema: {tp}")


def _encode_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(value, list):
        return [_encode_default(v) for v in value]
    return value


def _field_default(info: FieldInfo) -> Any:
    """The CRD default of a field, or PydanticUndefined for none."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return {}  # the apiserver then applies the nested defaults itself
        return _encode_default(value) if value else PydanticUndefined
    if info.default is None or info.default is PydanticUndefined:
        return PydanticUndefined
    return _encode_default(info.default)


def _describe(text: str | None) -> str | None:
    if not text:
        return None
    return " ".join(text.split()).replace("``", "`")


def model_schema(cls: type[BaseModel]) -> Schema:
    """Return the structural schema of a pydantic model (an ``object`` node)."""
    props: dict[str, Schema] = {}
    required: list[str] = []
    for name, info in cls.model_fields.items():
        key = info.alias or name
        schema = type_schema(info.annotation, list(info.metadata))
        extra = info.json_schema_extra
        if isinstance(extra, dict):
            schema.update(extra)
        description = _describe(info.description)
        if description:
            schema = {
                "description": description,
                **{k: v for k, v in schema.items() if k != "description"},
            }
        default = _field_default(info)
        if default is not PydanticUndefined:
            schema["default"] = default
        if info.is_required():
            required.append(key)
        props[key] = schema
    out: Schema = {"type": "object"}
    doc = _describe(cls.__doc__)
    if doc:
        out["description"] = doc
    out["properties"] = props
    if required:
        out["required"] = required
    rules = getattr(cls, "cel_rules", ())
    if rules:
        out["x-kubernetes-validations"] = [r.to_k8s() for r in rules]
    return out


def _printer_columns() -> list[Schema]:
    return [
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {
            "name": "Available",
            "type": "integer",
            "jsonPath": ".status.readyReplicas",
            "priority": 1,
        },
        {"name": "GPU", "type": "string", "jsonPath": ".status.plan.gpuSummary"},
        {"name": "TPxPPxEP", "type": "string", "jsonPath": ".status.plan.layout"},
        {"name": "Engine", "type": "string", "jsonPath": ".status.plan.engine"},
        {"name": "Canary", "type": "integer", "jsonPath": ".status.canary.weight"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def build_crd() -> dict[str, Any]:
    """Return the CustomResourceDefinition (apiextensions.k8s.io/v1) as a dict."""
    spec = model_schema(DeepSeekDeploymentSpec)
    status = model_schema(DeepSeekDeploymentStatus)
    root: Schema = {
        "type": "object",
        "description": "DeepSeekDeployment serves a DeepSeek model on GPU nodes: the operator "
        "plans the sharding from the model's shape and the cluster's GPUs, then creates the "
        "workloads, Services, autoscaler, traffic policy and monitoring.",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
        "x-kubernetes-validations": [r.to_k8s() for r in ROOT_RULES],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{resource.PLURAL}.{resource.GROUP}",
            "labels": {
                "app.kubernetes.io/name": "deepseek-operator",
                "app.kubernetes.io/part-of": "deepseek-k8s",
            },
        },
        "spec": {
            "group": resource.GROUP,
            "names": {
                "kind": resource.KIND,
                "listKind": f"{resource.KIND}List",
                "plural": resource.PLURAL,
                "singular": resource.SINGULAR,
                "shortNames": list(resource.SHORT_NAMES),
                "categories": list(resource.CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": resource.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": _printer_columns(),
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML text, exactly as committed under ``crds/``."""
    header = (
        "# Generated from deepseek_operator.api; do not edit.\n"
        f"# Regenerate: {REGENERATE_COMMAND}\n"
    )
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
