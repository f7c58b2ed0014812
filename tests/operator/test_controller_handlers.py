"""Handler wiring: what is registered, the context kopf's memo carries, option parsing."""

from __future__ import annotations

import copy
from typing import cast

import kopf
import pytest
from kubernetes import client as k8s

from deepseek_operator.controllers.context import HandlerContext, from_memo
from deepseek_operator.controllers.handlers import names_a_model_config, register
from deepseek_operator.controllers.indices import ConfigRefIndex, index_config_ref
from deepseek_operator.controllers.kube import Kube
from deepseek_operator.controllers.main import parse_options

pytestmark = pytest.mark.unit


def _ids(registry: kopf.OperatorRegistry) -> set[str]:
    return {
        str(h.id)
        for reg in (registry._indexing, registry._changing, registry._spawning, registry._watching)
        for h in reg.get_all_handlers()
    }


def test_handlers_register_and_options_parse() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, HandlerContext(kube=Kube(k8s.ApiClient()), lws_served=True))
    ids = {
        str(h.id)
        for reg in (registry._indexing, registry._changing, registry._spawning, registry._watching)
        for h in reg.get_all_handlers()
    }
    assert {
        "gpu_nodes",
        "workloads_deployments",
        "workloads_lws",
        "config_refs",
        "reconcile",
        "resync",
        "deployment_changed",
        "lws_changed",
        "model_config_changed",
        "cleanup",
    } <= ids
    opts = parse_options(["--standalone", "--priority", "auto", "-n", "a", "-n", "b"])
    assert opts.standalone and opts.priority > 0 and opts.namespaces == ("a", "b")
    with pytest.raises(SystemExit):
        parse_options(["--priority", "high"])


def test_without_leaderworkersets_they_are_neither_indexed_nor_watched() -> None:
    registry = kopf.OperatorRegistry()
    register(registry, HandlerContext(kube=Kube(k8s.ApiClient()), lws_served=False))
    ids = _ids(registry)
    assert "workloads_deployments" in ids and "model_config_changed" in ids
    assert not {"workloads_lws", "lws_changed"} & ids


def test_the_context_travels_in_kopfs_memo() -> None:
    ctx = HandlerContext(kube=Kube(k8s.ApiClient()))
    memo = ctx.memo()
    per_object = copy.copy(memo)  # what kopf gives each watched object
    per_object["inventory"] = "abc"
    assert from_memo(per_object) is ctx and "inventory" not in memo
    assert ctx.lock("ns", "a") is ctx.lock("ns", "a") is not ctx.lock("ns", "b")
    with pytest.raises(RuntimeError, match="handler_context"):
        from_memo(kopf.Memo())


def test_dsds_are_indexed_by_the_config_map_they_name() -> None:
    body = kopf.Body(
        {
            "metadata": {"name": "tiny", "namespace": "ns"},
            "spec": {"model": {"name": "acme/tiny", "configRef": {"name": "tiny-config"}}},
        }
    )
    assert index_config_ref(name="tiny", body=body) == {("ns", "tiny-config"): "tiny"}
    plain = kopf.Body({"metadata": {"name": "r1", "namespace": "ns"}, "spec": {"model": {}}})
    assert index_config_ref(name="r1", body=plain) is None


def test_only_config_maps_some_dsd_names_are_handled() -> None:
    refs = cast(ConfigRefIndex, {("ns", "tiny-config"): ["tiny"]})
    assert names_a_model_config(namespace="ns", name="tiny-config", config_refs=refs)
    assert not names_a_model_config(namespace="ns", name="kube-root-ca.crt", config_refs=refs)
    assert not names_a_model_config(namespace="other", name="tiny-config", config_refs=refs)
