"""Structured outputs in the engine over the real tiny model (random weights).

The grammar mask alone must make random weights emit documents that parse and validate;
constrained and free requests share batches, and the free ones must not notice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from deepseek_runtime.backends.native import NativeEngineOptions, build_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import EngineError, LLMEngine, SamplingParams
from deepseek_runtime.engine.api import GuidedDecoding

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_torch_thread")]

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "ok": {"type": "boolean"},
        "kind": {"enum": ["a", "b", "c"]},
    },
    "required": ["name", "ok", "kind"],
    "additionalProperties": False,
}
PROMPT = [0, 40, 41, 42, 43]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[LLMEngine, Any]:
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-v3"), "v3", seed=3)
    options = NativeEngineOptions(model_dir=Path(path), dtype="float32", device="cpu")
    return build_engine(options)


def guided(kind: str, spec: str = "", seed: int = 0, max_tokens: int = 120) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens, temperature=1.0, seed=seed, guided=GuidedDecoding(kind, spec)
    )


def test_mixed_batch_masks_only_constrained_rows(model: tuple[LLMEngine, Any]) -> None:
    eng, tok = model
    free = SamplingParams(max_tokens=12, temperature=0.9, seed=99)
    alone = eng.generate([PROMPT], free)[0]
    params = [guided("json_schema", json.dumps(SCHEMA), seed=i) for i in range(4)]
    outs = eng.generate([PROMPT] * 5, [*params[:2], free, *params[2:]])
    assert outs[2] == alone  # the free row is sampled exactly as without neighbours
    for out in outs[:2] + outs[3:]:
        jsonschema.validate(json.loads(tok.decode(out)), SCHEMA)
    hits, misses = eng.structured_outputs().cache_info()
    assert misses == 1 and hits >= 4  # one compile for one schema


def test_json_object_regex_and_choice(model: tuple[LLMEngine, Any]) -> None:
    eng, tok = model
    choices = ["red", "green", "blue"]
    for seed in range(3):
        regex, choice = eng.generate(
            [PROMPT, PROMPT],
            [
                guided("regex", r"[a-z]{3,6}-\d{2}", seed),
                guided("choice", json.dumps(choices), seed),
            ],
        )
        assert re.fullmatch(r"[a-z]{3,6}-\d{2}", tok.decode(regex))
        assert tok.decode(choice) in choices
    obj = eng.generate([PROMPT], guided("json_object", seed=1, max_tokens=400))
    assert isinstance(json.loads(tok.decode(obj[0])), dict)


def test_greedy_constrained_and_finish_reason(model: tuple[LLMEngine, Any]) -> None:
    eng, _ = model
    params = SamplingParams(
        max_tokens=60, temperature=0, guided=GuidedDecoding("json_schema", json.dumps(SCHEMA))
    )
    eng.add_request("g", PROMPT, params)
    text, reason = [], None
    while eng.has_unfinished_requests():
        for out in eng.step():
            text.append(out.text)
            reason = out.finish_reason
    jsonschema.validate(json.loads("".join(text)), SCHEMA)
    assert reason is not None and reason.value == "stop"


@pytest.mark.parametrize(
    ("kind", "spec"),
    [("json_schema", "{not json"), ("json_schema", '{"type": "nosuchtype"}'), ("regex", "(")],
)
def test_invalid_specs_are_engine_errors(
    model: tuple[LLMEngine, Any], kind: str, spec: str
) -> None:
    eng, _ = model
    with pytest.raises(EngineError, match="invalid"):
        eng.add_request(f"bad-{kind}-{len(spec)}", PROMPT, guided(kind, spec))
    assert not eng.has_unfinished_requests()
