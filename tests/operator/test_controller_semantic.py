"""Unit tests of the desired-vs-live comparison that keeps resyncs write-free."""

from __future__ import annotations

import copy

import pytest

from deepseek_operator.controllers.semantic import (
    HASH_ANNOTATION,
    digest,
    is_subset,
    needs_apply,
    parse_quantity,
    stamp,
)

pytestmark = pytest.mark.unit


def _deployment(image: str = "img:1", gpus: str = "8") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "r1", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": image,
                            "ports": [{"containerPort": 8000}],
                            "resources": {"limits": {"nvidia.com/gpu": gpus, "memory": "1024Mi"}},
                        }
                    ],
                    "securityContext": {},
                }
            },
        },
    }


def _live(desired: dict) -> dict:
    """What the apiserver returns: defaults, canonical quantities, bookkeeping."""
    live = copy.deepcopy(desired)
    live["metadata"] |= {"uid": "u", "resourceVersion": "7", "managedFields": [{}]}
    c = live["spec"]["template"]["spec"]["containers"][0]
    c["ports"][0]["protocol"] = "TCP"
    c["resources"]["limits"]["memory"] = "1Gi"
    c["terminationMessagePath"] = "/dev/termination-log"
    del live["spec"]["template"]["spec"]["securityContext"]
    live["spec"]["revisionHistoryLimit"] = 10
    live["status"] = {"readyReplicas": 2}
    return live


def test_quantities_compare_by_value() -> None:
    assert parse_quantity("1Gi") == parse_quantity("1024Mi")
    assert parse_quantity("500m") == parse_quantity("0.5")
    assert parse_quantity(8) == parse_quantity("8")
    assert parse_quantity("banana") is None
    assert parse_quantity(True) is None


def test_live_with_defaults_needs_no_apply() -> None:
    desired = stamp(_deployment())
    assert not needs_apply(desired, _live(desired))


def test_missing_object_needs_apply() -> None:
    assert needs_apply(stamp(_deployment()), None)


def test_changed_field_needs_apply() -> None:
    live = _live(stamp(_deployment()))
    assert needs_apply(stamp(_deployment(image="img:2")), live)
    assert needs_apply(stamp(_deployment(gpus="4")), live)


def test_removed_field_changes_the_hash() -> None:
    full = _deployment()
    smaller = _deployment()
    del smaller["metadata"]["labels"]
    live = _live(stamp(full))
    # every field of `smaller` is in live, but the digest differs, so it is re-applied
    assert is_subset({k: v for k, v in smaller.items() if k != "metadata"}, live)
    assert needs_apply(stamp(smaller), live)


def test_digest_ignores_its_own_annotation_and_key_order() -> None:
    a = _deployment()
    b = stamp(_deployment())
    assert digest(a) == digest(b) == b["metadata"]["annotations"][HASH_ANNOTATION]
    assert digest({"x": 1, "y": 2}) == digest({"y": 2, "x": 1})


def test_lists_must_match_in_length() -> None:
    assert not is_subset([1, 2], [1, 2, 3])
    assert is_subset([{"a": 1}], [{"a": 1, "b": 2}])
    assert is_subset({"x": []}, {})
