"""Shared pydantic base classes for the DeepSeekDeployment API.

Every spec model derives from :class:`ApiModel`: fields are snake_case in Python and
camelCase on the wire (the alias), attribute docstrings become field descriptions (and so
``kubectl explain`` text, via :mod:`deepseek_operator.crd`), and unknown fields are
rejected so a typo in a manifest read by the CLI is reported instead of silently ignored.
The apiserver prunes unknown fields itself, so the controller never sees them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """Base of every spec model: camelCase aliases, docstring descriptions, strict keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """Return the object as Kubernetes JSON: camelCase keys, unset optionals omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Base of status models: tolerant of fields written by newer operator versions."""

    model_config = ConfigDict(extra="ignore")
