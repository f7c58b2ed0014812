"""The request's structured-output fields as one engine constraint.

OpenAI's ``response_format`` (``json_object``, ``json_schema``) and vLLM's extras
(``guided_json``, ``guided_regex``, ``guided_choice``) all become one
:class:`~deepseek_runtime.engine.api.GuidedDecoding`; the engine compiles it (a schema or
regex that does not compile is refused there, which the server answers with a 400). Pure:
used by ``server.preparation``.
"""

from __future__ import annotations

import json

from ..engine.api import GuidedDecoding
from .errors import APIError
from .protocol import SamplingFields


def _schema_text(schema: object, param: str) -> str:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            raise APIError(
                400, f"{param} is not valid JSON", param=param, code="invalid_value"
            ) from None
    if not isinstance(schema, dict):
        raise APIError(400, f"{param} must be a JSON Schema object", param=param)
    return json.dumps(schema, sort_keys=True)  # one text per schema: one compile


def guided_decoding(body: SamplingFields) -> GuidedDecoding | None:
    """The constraint the body asks for; None for none; a 400 when it asks for two."""
    found: list[tuple[str, GuidedDecoding]] = []
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_object":
        found.append(("response_format", GuidedDecoding("json_object")))
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        text = _schema_text(fmt.json_schema.json_schema, "response_format.json_schema.schema")
        found.append(("response_format", GuidedDecoding("json_schema", text)))
    if body.guided_json is not None:
        found.append(
            (
                "guided_json",
                GuidedDecoding("json_schema", _schema_text(body.guided_json, "guided_json")),
            )
        )
    if body.guided_regex is not None:
        found.append(("guided_regex", GuidedDecoding("regex", body.guided_regex)))
    if body.guided_choice is not None:
        if any(not c for c in body.guided_choice):
            raise APIError(400, "guided_choice entries must be non-empty", param="guided_choice")
        found.append(("guided_choice", GuidedDecoding("choice", json.dumps(body.guided_choice))))
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        raise APIError(
            400,
            f"give at most one structured output constraint (got {names})",
            code="invalid_value",
        )
    return found[0][1] if found else None
