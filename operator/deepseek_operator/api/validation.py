"""Cross-field validation rules, written once for both the apiserver and Python.

Each :class:`Rule` holds a CEL expression that the CRD carries as an
``x-kubernetes-validations`` entry (so ``kubectl apply`` rejects a bad spec) and the
message shared with the Python check in the pydantic models (so the CLI and the controller
reject the same spec with the same words).  Rules that need the cluster (does the tensor
degree divide the head count, is there a large enough pool) live in the planner instead.

Lists and strings referenced by CEL carry ``maxItems``/``maxLength`` in the models so the
apiserver's cost estimate stays within budget.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Final

from pydantic import JsonValue


@dataclass(frozen=True, slots=True)
class Rule:
    """One CEL rule: expression, message, and optional field path and reason."""

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def to_k8s(self) -> dict[str, Any]:
        """Return the rule as an ``x-kubernetes-validations`` item."""
        out: dict[str, Any] = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
QUANTITY_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|K|M|G|T|P)?$"
SOURCE_URI_PATTERN: Final = r"^(hf|s3|gs|pvc|oci)://[^\s]+$"
NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")


def duration_seconds(value: str) -> float:
    """Parse a Go-style duration such as ``"1m30s"`` or ``"500ms"`` into seconds.

    Raises:
        ValueError: when the text is not a duration.
    """
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration like 30s, 5m or 1h30m")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(value))


# Child objects append at most "-headless" / "-canary-<n>" to the name, and Services
# must be DNS-1035 labels of at most 63 characters.
MAX_NAME_LENGTH: Final = 42

ROOT_RULES: Final = (
    Rule(
        rule=f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        message=f"metadata.name must be at most {MAX_NAME_LENGTH} characters: the operator "
        "derives Service and workload names from it",
    ),
)

SPEC_RULES: Final = (
    Rule(
        rule="!(has(self.replicas) && has(self.autoscaling))",
        message="set either spec.replicas or spec.autoscaling, not both",
        field_path=".replicas",
    ),
    Rule(
        rule="!has(self.rollout) || self.rollout.strategy != 'Canary' "
        "|| (has(self.traffic) && has(self.traffic.istio))",
        message="rollout.strategy Canary splits traffic with Istio: set spec.traffic.istio",
        field_path=".rollout.strategy",
    ),
    Rule(
        rule="!has(self.serving) || !has(self.serving.auth) "
        "|| !(has(self.serving.auth.jwt) || has(self.serving.auth.rolesRef)) "
        "|| (has(self.engine) && has(self.engine.kind) "
        "&& (self.engine.kind == 'native' || self.engine.kind == 'triton'))",
        message="serving.auth.jwt and serving.auth.rolesRef are enforced by deepseek-runtime: "
        "set engine.kind native or triton",
        field_path=".serving.auth",
    ),
)

AUTOSCALING_RULES: Final = (
    Rule(
        rule="self.minReplicas <= self.maxReplicas",
        message="autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        field_path=".minReplicas",
    ),
)

CANARY_STEP_RULES: Final = (
    Rule(
        rule="self.map(s, s.weight).isSorted() "
        "&& self.all(s, self.exists_one(t, t.weight == s.weight))",
        message="canary step weights must rise strictly, e.g. 10, 25, 50",
    ),
)

PARALLELISM_RULES: Final = (
    Rule(
        rule="!has(self.expert) || self.expert == 1 || !has(self.tensor) "
        "|| self.expert % self.tensor == 0 || self.tensor % self.expert == 0",
        message="parallelism.expert must be 1, a multiple of tensor, or divide tensor",
        field_path=".expert",
    ),
)


def check_strictly_rising(weights: list[int]) -> None:
    """Raise ``ValueError`` unless ``weights`` rise strictly (the CANARY_STEP_RULES rule)."""
    if any(b <= a for a, b in itertools.pairwise(weights)):
        raise ValueError(CANARY_STEP_RULES[0].message + f" (got {weights})")


LIST_SET: Final[dict[str, JsonValue]] = {"x-kubernetes-list-type": "set"}
"""Schema marker: the apiserver rejects duplicate items (and SSA merges items)."""


def unique_items(values: list[Any]) -> list[Any]:
    """Reject duplicate items, as a ``set`` list in the CRD does (pydantic AfterValidator)."""
    seen: list[Any] = []
    for value in values:
        key = getattr(value, "name", value)
        if key in seen:
            raise ValueError(f"duplicate entry {key!r}")
        seen.append(key)
    return values
