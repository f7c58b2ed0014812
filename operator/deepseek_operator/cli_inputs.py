"""Reading the CLI's input files with errors that name the file and the field.

:class:`InputError` carries a message such as ``dsd.yaml: spec.model.maxModelLen: Input
should be greater than or equal to 256``; the CLI prints it and exits with status 2.
Used by :mod:`deepseek_operator.cli` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from deepseek_operator.api.resource import API_VERSION, KIND, DeepSeekDeployment


class InputError(ValueError):
    """A bad input file; the message names the file and the field."""


def _load_docs(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise InputError(f"{path}:{where}: not valid YAML: {problem}") from None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_validation_error(path: Path, err: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``file: field.path: message``."""
    lines = []
    for e in err.errors():
        loc = _loc(tuple(e["loc"]))
        field = ".".join(p for p in (prefix, loc) if p) or "(document)"
        lines.append(f"{path}: {field}: {e['msg']}")
    return "\n".join(lines)


def load_deployments(path: Path) -> list[DeepSeekDeployment]:
    """Parse every DeepSeekDeployment document of a YAML/JSON file."""
    docs = _load_docs(path)
    if not docs:
        raise InputError(f"{path}: no DeepSeekDeployment document")
    out = []
    for i, doc in enumerate(docs):
        where = f"{path}" + (f" (document {i + 1})" if len(docs) > 1 else "")
        if not isinstance(doc, dict):
            raise InputError(f"{where}: expected a mapping, got {type(doc).__name__}")
        if doc.get("kind") != KIND:
            raise InputError(f"{where}: kind: expected {KIND}, got {doc.get('kind')!r}")
        if doc.get("apiVersion") != API_VERSION:
            raise InputError(
                f"{where}: apiVersion: expected {API_VERSION}, got {doc.get('apiVersion')!r}"
            )
        try:
            out.append(DeepSeekDeployment.model_validate(doc))
        except ValidationError as err:
            raise InputError(format_validation_error(Path(where), err)) from None
    return out


def load_nodes(path: Path) -> list[dict[str, Any]]:
    """Node dicts from ``kubectl get nodes -o yaml`` (a List), a Node, or a YAML list."""
    items: list[Any] = []
    for doc in _load_docs(path):
        if isinstance(doc, list):
            items += doc
        elif isinstance(doc, dict) and doc.get("kind") in ("List", "NodeList"):
            got = doc.get("items")
            if not isinstance(got, list):
                raise InputError(f"{path}: items: expected a list of Node objects")
            items += got
        elif isinstance(doc, dict) and doc.get("kind") == "Node":
            items.append(doc)
        else:
            kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
            raise InputError(f"{path}: kind: expected List or Node, got {kind!r}")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or item.get("kind", "Node") != "Node":
            raise InputError(f"{path}: items[{i}]: expected a Node object")
        if not isinstance(item.get("metadata"), dict):
            raise InputError(f"{path}: items[{i}].metadata: missing")
    return items


def load_config(path: Path) -> dict[str, Any]:
    """A model's ``config.json``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: line {err.lineno}: not valid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data
