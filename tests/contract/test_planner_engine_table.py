"""The operator's engine table says what the runtime says: its native row is the runtime's.

The operator image carries no torch, so ``deepseek_operator.planning.engines`` keeps the
native engine's limits as plain data. If they drift from
``deepseek_runtime.capabilities.NATIVE`` the planner either renders pods that
``deepseek-runtime serve`` refuses with exit 2 or sends to vLLM what native could serve.
"""

from __future__ import annotations

import dataclasses

import pytest

from deepseek_operator.planning import catalog, engines
from deepseek_runtime import capabilities

pytestmark = pytest.mark.unit


def test_native_row_equals_the_runtime_field_by_field() -> None:
    runtime_fields = [f.name for f in dataclasses.fields(capabilities.NATIVE)]
    assert runtime_fields == [f.name for f in dataclasses.fields(engines.NATIVE)]
    for name in runtime_fields:
        ours, theirs = getattr(engines.NATIVE, name), getattr(capabilities.NATIVE, name)
        assert ours == theirs, f"planning/engines.py NATIVE.{name} = {ours!r}, runtime {theirs!r}"


def test_every_catalog_architecture_has_an_engine_and_vllm_serves_all() -> None:
    model_types = {catalog.catalog_config(n)["model_type"] for n in catalog.catalog_names()}
    assert model_types == set(engines.CATALOG_ARCHITECTURES)
    assert model_types <= set(engines.VLLM.architectures)
    assert set(engines.NATIVE.quantizations) <= set(engines.VLLM.quantizations)
    assert set(engines.NATIVE.kv_cache_dtypes) <= set(engines.VLLM.kv_cache_dtypes)
