"""Hypothesis fuzzer of DeepSeekDeployment specs against the real apiserver and operator.

Specs are drawn from the CRD's own OpenAPI schema (``crds/``): every object property may
appear, enums and bounds are mostly respected and sometimes broken (out-of-range
numbers, wrong types, unknown strings), and model names and GPU products come from the
catalog's and the cluster's vocabulary so that many specs get as far as the planner.
Each spec is created in one namespace; it must end one of three ways:

- ``rejected``: the apiserver refuses it (schema, enum, CEL rule);
- ``refused``: accepted, then ``Planned=False`` with a non-empty message;
- ``planned``: accepted, then ``Planned=True``.

Anything else is a problem: no ``Planned`` condition within ``settle_s`` (``stuck``), a
DSD that cannot be deleted within ``delete_s`` (``undeletable``), or a traceback in the
operator's log, or the operator exiting. The report counts each ending.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from deepseek_operator.api import API_VERSION, KIND
from e2e.operator_harness import CRD_DIR, Kube, OperatorProcess, find_condition

MODELS = (
    "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-V3",
    "deepseek-ai/DeepSeek-V2-Lite",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "someone/unknown-model",
)
PRODUCTS = ("A100", "H100", "H200", "L40S", "B200", "T4", "")
WORDS = ("", "a", "1s", "30s", "5m", "abc-def", "-1", "8Gi", "vector(1)", "x" * 300)


def spec_schema() -> dict[str, Any]:
    """The ``spec`` schema of the DeepSeekDeployment CRD."""
    doc = yaml.safe_load((CRD_DIR / "deepseek.ai_deepseekdeployments.yaml").read_text())
    version = doc["spec"]["versions"][0]
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def _wrong() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(WORDS))


POOL = (*WORDS, "30s", "1m", "250ms", "10Gi", "8Gi", "x1", "default", "gpu-pool", "25%")


def _string(name: str, schema: dict[str, Any], strict: bool) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from([*schema["enum"], *([] if strict else ["NotAnEnumValue"])])
    lowered = name.lower()
    if not strict and (lowered == "name" or "model" in lowered):
        return st.sampled_from(MODELS)
    if "uri" in lowered:
        return st.sampled_from(["hf://deepseek-ai/DeepSeek-R1", "s3://bucket/x", "bad-uri"])
    if not strict:
        return st.sampled_from(WORDS)
    longest = int(schema.get("maxLength", 253))
    shortest = int(schema.get("minLength", 0))
    pattern = schema.get("pattern")
    fits = [
        w
        for w in POOL
        if shortest <= len(w) <= longest and (pattern is None or re.fullmatch(pattern, w))
    ]
    if fits:
        return st.sampled_from(fits)
    if pattern is not None:
        return st.from_regex(pattern, fullmatch=True).filter(
            lambda w: shortest <= len(w) <= longest
        )
    return st.text(alphabet="abc-1", min_size=max(shortest, 1), max_size=min(longest, 8))


def _number(schema: dict[str, Any], integer: bool, strict: bool) -> st.SearchStrategy[Any]:
    lo = schema.get("minimum", 0 if strict else -3)
    hi = schema.get("maximum", max(lo, 0) + 64)
    inside = st.integers(int(lo), int(hi)) if integer else st.floats(lo, hi, allow_nan=False)
    if strict:
        return inside
    outside = st.sampled_from([int(lo) - 1, int(hi) + 1, 10**9])
    return st.one_of(inside, inside, inside, outside)


def from_schema(
    schema: dict[str, Any], name: str = "spec", depth: int = 0, strict: bool = False
) -> Any:
    """A strategy of values for ``schema``; ``strict``: types, enums and bounds kept,
    else sometimes broken."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return st.one_of(st.integers(-2, 200), st.sampled_from(["25%", "1", "abc"]))
    if kind == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        if not props or depth > 4:
            return st.just({})
        required = set(schema.get("required") or [])
        keys = sorted(props)
        return st.fixed_dictionaries(
            {k: from_schema(props[k], k, depth + 1, strict) for k in keys if k in required},
            optional={
                k: from_schema(props[k], k, depth + 1, strict) for k in keys if k not in required
            },
        )
    if "enum" in schema and kind != "string":
        return st.sampled_from(list(schema["enum"]))
    if kind == "array":
        item = schema.get("items") or {}
        low, high = int(schema.get("minItems", 0)), int(schema.get("maxItems", 3))
        high = max(low, min(high, 3))
        if name == "products":
            return st.lists(st.sampled_from(PRODUCTS), min_size=low, max_size=high)
        inner = from_schema(item, name, depth + 1, strict)
        return st.lists(inner, min_size=low if strict else 0, max_size=high)
    if kind == "string":
        base = _string(name, schema, strict)
    elif kind in ("integer", "number"):
        base = _number(schema, kind == "integer", strict)
    elif kind == "boolean":
        base = st.booleans()
    else:
        base = st.one_of(st.integers(0, 4), st.sampled_from(WORDS))
    return base if strict else st.one_of(*([base] * 9), _wrong())


def _anchored(drawn: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def anchor(pair: tuple[dict[str, Any], str]) -> dict[str, Any]:
        spec, model = pair
        source = {"uri": f"hf://{model}"}
        return {**spec, "model": {**(spec.get("model") or {}), "name": model, "source": source}}

    return st.tuples(drawn, st.sampled_from(MODELS)).map(anchor)


def specs() -> st.SearchStrategy[dict[str, Any]]:
    """Whole specs: schema-true ones on a catalog model (which reach the planner), broken
    ones on a catalog model, and anything the schema's shape allows."""
    schema = spec_schema()
    strict = from_schema(schema, strict=True)
    loose = from_schema(schema)
    return st.one_of(_anchored(strict), _anchored(strict), _anchored(loose), loose)


@dataclass
class SpecFuzzReport:
    endings: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    tracebacks: int = 0
    operator_alive: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "specs": sum(self.endings.values()),
            "endings": dict(self.endings),
            "problems": self.problems[:20],
            "operator_tracebacks": self.tracebacks,
            "operator_alive": self.operator_alive,
        }


class SpecFuzzer:
    def __init__(
        self,
        kube: Kube,
        operator: OperatorProcess,
        namespace: str,
        *,
        settle_s: float = 20.0,
        delete_s: float = 30.0,
    ) -> None:
        self.kube, self.operator, self.namespace = kube, operator, namespace
        self.settle_s, self.delete_s = settle_s, delete_s
        self.report = SpecFuzzReport()
        self._n = 0

    def _ending(self, name: str) -> str:
        deadline = time.monotonic() + self.settle_s
        while time.monotonic() < deadline:
            out = self.kube("get", "dsd", name, "-n", self.namespace, "-o", "json", check=False)
            if out.returncode == 0:
                obj = json.loads(out.stdout)
                cond = find_condition(obj, "Planned")
                if cond and cond.get("status") == "True":
                    return "planned"
                if cond and cond.get("status") == "False":
                    return "refused" if cond.get("message") else "refused_without_message"
            time.sleep(0.3)
        return "stuck"

    def one(self, spec: dict[str, Any]) -> str:
        self._n += 1
        name = f"fz{self._n}"
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}
        created = self.kube(
            "create", "-n", self.namespace, "-f", "-", stdin=json.dumps(body), check=False
        )
        if created.returncode != 0:
            ending = "rejected"
        else:
            ending = self._ending(name)
            gone = self.kube(
                "delete",
                "dsd",
                name,
                "-n",
                self.namespace,
                f"--timeout={self.delete_s:.0f}s",
                check=False,
            )
            if gone.returncode != 0:
                ending = "undeletable"
        self.report.endings[ending] += 1
        if ending not in ("rejected", "refused", "planned"):
            self.report.problems.append(f"{ending}: {json.dumps(spec)[:4000]}")
        return ending

    def run(self, examples: int, rng_seed: int = 13) -> SpecFuzzReport:
        @seed(rng_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(specs())
        def check(spec: dict[str, Any]) -> None:
            self.one(spec)

        check()
        log = self.operator.log_path.read_text(errors="replace")
        self.report.tracebacks = log.count("Traceback")
        self.report.operator_alive = self.operator.alive()
        return self.report
