"""Generate ``docs/api.md``, the API reference, from the CRD schema built from the models.

One section per object (``spec.model``, ``spec.engine.kvCache`` …) with a table of its
fields: type, default, bounds/enum, and the description (the model's field docstring),
followed by the CEL rules. A unit test keeps ``docs/api.md`` in sync; regenerate with
``deepseek-operator api-docs > docs/api.md``.
"""

from __future__ import annotations

import json
from typing import Any

from deepseek_operator.api import defaults, resource
from deepseek_operator.crd import CRD_FILE, build_crd

REGENERATE = "deepseek-operator api-docs > docs/api.md"


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = node.get("type", "object")
    if kind == "array":
        return f"[]{_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return str(kind)


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append(" | ".join(f"`{v}`" for v in node["enum"]))
    lo, hi = node.get("minimum"), node.get("maximum")
    if lo is not None or hi is not None:
        op = ">" if node.get("exclusiveMinimum") else "≥"
        parts.append(
            ", ".join(
                x
                for x in (
                    f"{op} {lo}" if lo is not None else "",
                    f"≤ {hi}" if hi is not None else "",
                )
                if x
            )
        )
    for key, label in (
        ("maxLength", "max length"),
        ("maxItems", "max items"),
        ("pattern", "pattern"),
    ):
        if key in node:
            value = f"`{node[key]}`" if key == "pattern" else str(node[key])
            parts.append(f"{label} {value}")
    return "; ".join(parts)


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if value == {}:
        return "`{}`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value, separators=(',', ':'))}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _is_object(node: dict[str, Any]) -> bool:
    return node.get("type") == "object" and "properties" in node


def _sections(path: str, node: dict[str, Any], out: list[str]) -> None:
    out += [f"### `{path}`", "", node.get("description", ""), ""]
    required = set(node.get("required", []))
    out += ["| Field | Type | Default | Allowed | Description |", "|---|---|---|---|---|"]
    children: list[tuple[str, dict[str, Any]]] = []
    for name, child in node["properties"].items():
        target = child.get("items", child) if child.get("type") == "array" else child
        if _is_object(target):
            children.append((f"{path}.{name}" + ("[]" if target is not child else ""), target))
        req = " (required)" if name in required else ""
        out.append(
            f"| `{name}`{req} | {_type(child)} | {_default(child)} | "
            f"{_cell(_constraints(child))} | {_cell(child.get('description', ''))} |"
        )
    out.append("")
    rules = node.get("x-kubernetes-validations", [])
    if rules:
        out += ["Rules (CEL, enforced by the apiserver):", ""]
        out += [f"- {r['message']}: `{r['rule']}`" for r in rules]
        out.append("")
    for child_path, child in children:
        _sections(child_path, child, out)


def api_markdown() -> str:
    """The whole API reference as Markdown."""
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    out = [
        "# DeepSeekDeployment API reference",
        "",
        f"<!-- Generated from deepseek_operator.api; do not edit. Regenerate: {REGENERATE} -->",
        "",
        f"`apiVersion: {resource.API_VERSION}`, `kind: {resource.KIND}`, short name "
        f"`{resource.SHORT_NAMES[0]}`, namespaced. The CRD is `crds/{CRD_FILE}` "
        "(`deepseek-operator crd`); `kubectl explain dsd.spec.<field>` prints the same "
        "descriptions.",
        "",
        schema["description"],
        "",
        "Subresources: `status`, and `scale` (`.spec.replicas` ↔ `.status.replicas`, selector "
        "`.status.selector`), so `kubectl scale dsd NAME --replicas N` works.",
        "",
        "Printer columns: " + ", ".join(c["name"] for c in version["additionalPrinterColumns"]),
        "",
        f"Default images: native/triton `{defaults.NATIVE_IMAGE}`, vllm `{defaults.VLLM_IMAGE}`.",
        "",
        "## Spec",
        "",
    ]
    root_rules = schema.get("x-kubernetes-validations", [])
    if root_rules:
        out += ["Object-level rules:", ""]
        out += [f"- {r['message']}: `{r['rule']}`" for r in root_rules]
        out.append("")
    _sections("spec", schema["properties"]["spec"], out)
    out += ["## Status", ""]
    _sections("status", schema["properties"]["status"], out)
    return "\n".join(out).rstrip() + "\n"
