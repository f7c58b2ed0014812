"""The planner plans only what the engine serves: ``engine.kind`` auto, explicit kinds, parsers.

``auto`` (the default) picks native when the native engine's capability row
(``planning/engines.py``) admits the plan, vLLM otherwise, and says why in the reasons. An
explicit ``native`` that native cannot serve is a :class:`PlanningError` naming the field
to change. R1 and the distills get the reasoning parser, V3/R1 the tool-call parser.
"""

from __future__ import annotations

from typing import Any

import pytest
from dsd_factory import A100, H100, H200, L40S, dsd, inventory, pool, spec

from deepseek_operator.api import defaults
from deepseek_operator.planning import PlanningError, plan_deployment
from deepseek_operator.planning.engines import ENGINES, NATIVE, NATIVE_AUTO, VLLM, auto_row
from deepseek_operator.planning.examples import example_model_config
from deepseek_operator.planning.memory import Sharding
from deepseek_operator.render import render_children

pytestmark = pytest.mark.unit

QWEN_14B = "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
V2_LITE = "deepseek-ai/DeepSeek-V2-Lite"
V3 = "deepseek-ai/DeepSeek-V3"


def _engine_container(**fields: Any) -> dict[str, Any]:
    nodes = fields.pop("nodes")
    d = dsd(**fields)
    plan = plan_deployment(d.spec, inventory(nodes))
    for obj in render_children(d, plan):
        if obj["kind"] in ("Deployment", "LeaderWorkerSet"):
            template = obj["spec"].get("template") or obj["spec"]["leaderWorkerTemplate"].get(
                "leaderTemplate"
            )
            return dict(template["spec"]["containers"][0])
    raise AssertionError("no workload rendered")


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"] if "value" in e}


def test_auto_is_the_default_and_picks_native_when_one_gpu_holds_the_model() -> None:
    s = spec(QWEN_14B)
    assert s.engine.kind == "auto"
    plan = plan_deployment(s, inventory(pool(A100, 1)))
    assert plan.engine == "native" and plan.gpus_per_replica == 1
    assert any(r.startswith("engine native (engine.kind auto)") for r in plan.reasons)
    assert plan.to_status()["engine"] == "native"


def test_auto_picks_vllm_for_a_multi_gpu_layout_and_says_why() -> None:
    plan = plan_deployment(spec(), inventory(pool(H200, 1)))
    assert (plan.engine, plan.tensor, plan.expert) == ("vllm", 8, 8)
    (why,) = [r for r in plan.reasons if r.startswith("engine vllm (engine.kind auto)")]
    assert "native serves one GPU per replica today" in why and "TP8×PP1" in why


def test_auto_never_lets_the_native_limit_shrink_the_pool_choice() -> None:
    # 14B on L40S needs TP2 (native cannot), on A100 one GPU: native on A100 wins.
    plan = plan_deployment(spec(QWEN_14B), inventory(pool(L40S, 2), pool(A100, 1)))
    assert (plan.engine, plan.gpu_product, plan.tensor) == ("native", A100[0], 1)
    # With only L40S nodes, the native engine cannot serve it, so vLLM does, at TP2.
    plan = plan_deployment(spec(QWEN_14B), inventory(pool(L40S, 2)))
    assert (plan.engine, plan.tensor) == ("vllm", 2)


def test_auto_picks_vllm_for_an_fp8_kv_cache() -> None:
    plan = plan_deployment(
        spec(QWEN_14B, engine={"kvCache": {"dtype": "fp8"}}), inventory(pool(A100, 1))
    )
    assert plan.engine == "vllm" and plan.gpus_per_replica == 1
    assert any("native caches KV only as auto, not fp8" in r for r in plan.reasons)


@pytest.mark.parametrize(
    ("fields", "nodes", "field", "words"),
    [
        (
            {"engine": {"kvCache": {"dtype": "fp8"}}},
            pool(H200, 1),
            "spec.engine.kvCache.dtype",
            ["caches KV only as auto"],
        ),
    ],
)
def test_explicit_native_that_native_cannot_serve_names_what_to_change(
    fields: dict[str, Any], nodes: list[dict[str, Any]], field: str, words: list[str]
) -> None:
    engine = {"kind": "native", **fields.pop("engine", {})}
    with pytest.raises(PlanningError) as err:
        plan_deployment(spec(engine=engine, **fields), inventory(nodes))
    assert err.value.field == field
    assert "use engine.kind auto or vllm" in err.value.message
    for w in words:
        assert w in err.value.message


def test_explicit_kinds_are_kept_when_they_can_serve() -> None:
    native = plan_deployment(spec(QWEN_14B, engine={"kind": "native"}), inventory(pool(A100, 1)))
    assert native.engine == "native" and "engine native: set in spec.engine.kind" in native.reasons
    vllm = plan_deployment(spec(QWEN_14B, engine={"kind": "vllm"}), inventory(pool(A100, 1)))
    assert vllm.engine == "vllm"
    triton = plan_deployment(spec(engine={"kind": "triton"}), inventory(pool(H200, 1)))
    assert (triton.engine, triton.tensor) == ("triton", 8)


def test_an_architecture_no_engine_loads_is_refused() -> None:
    s = spec("acme/mystery", model={"configRef": {"name": "cfg"}, "maxModelLen": 2048})
    with pytest.raises(PlanningError) as err:
        plan_deployment(s, inventory(pool(A100, 1)), example_model_config(model_type="mamba"))
    assert err.value.field == "spec.model" and "'mamba'" in err.value.message


def test_native_row_admits_every_layout_but_auto_gives_it_one_gpu() -> None:
    assert ENGINES["native"] is NATIVE and not NATIVE.one_gpu_only
    assert NATIVE.admits(Sharding(8, 2, 8), 2) and NATIVE.parallel_verified_on == ("cpu",)
    assert NATIVE_AUTO.one_gpu_only and NATIVE_AUTO.admits(Sharding(1, 1, 1), 1)
    for s in (Sharding(2, 1, 1), Sharding(1, 2, 1), Sharding(1, 1, 2), Sharding(1, 1, 1, data=2)):
        assert not NATIVE_AUTO.admits(s, s.pipeline)
    assert VLLM.admits(Sharding(8, 2, 8), 2) and auto_row(VLLM) is VLLM


def test_explicit_native_gets_a_multi_node_layout_and_says_it_is_unverified_on_gpus() -> None:
    plan = plan_deployment(spec(engine={"kind": "native"}), inventory(pool(H100, 2)))
    assert (plan.engine, plan.tensor, plan.pipeline, plan.nodes_per_replica) == ("native", 8, 2, 2)
    assert any("never over NCCL on GPUs" in r for r in plan.reasons), plan.reasons
    tp8 = plan_deployment(
        spec(engine={"kind": "native"}, parallelism={"tensor": 8}), inventory(pool(H200, 1))
    )
    assert (tp8.engine, tp8.tensor) == ("native", 8)


def test_r1_distill_renders_the_reasoning_parser_for_native_and_vllm() -> None:
    native = _engine_container(model_name=QWEN_14B, nodes=pool(A100, 1))
    assert native["image"] == defaults.NATIVE_IMAGE and "--engine" in native["args"]
    env = _env(native)
    assert env["DSR_REASONING_PARSER"] == "deepseek_r1" and "DSR_TOOL_CALL_PARSER" not in env
    vllm = _engine_container(model_name=QWEN_14B, engine={"kind": "vllm"}, nodes=pool(A100, 1))
    args = vllm["args"]
    assert args[args.index("--reasoning-parser") + 1] == "deepseek_r1"
    assert "--tool-call-parser" not in args


def test_v3_gets_the_tool_call_parser_and_no_reasoning_parser() -> None:
    args = _engine_container(model_name=V3, nodes=pool(H200, 1))["args"]
    assert "--reasoning-parser" not in args
    i = args.index("--tool-call-parser")
    assert args[i - 1 : i + 2] == ["--enable-auto-tool-choice", "--tool-call-parser", "deepseek_v3"]
    triton = _engine_container(
        model_name=V3, engine={"kind": "triton", "tritonURL": "t:8001"}, nodes=pool(H200, 1)
    )
    assert _env(triton)["DSR_TOOL_CALL_PARSER"] == "deepseek_v3"


def test_models_outside_r1_and_v3_get_no_parser() -> None:
    env = _env(_engine_container(model_name=V2_LITE, nodes=pool(A100, 1)))
    assert "DSR_REASONING_PARSER" not in env and "DSR_TOOL_CALL_PARSER" not in env


def test_explicit_native_multi_node_renders_one_command_and_the_planned_kv_budget() -> None:
    container = _engine_container(engine={"kind": "native"}, nodes=pool(H100, 2))
    assert container["command"] == ["deepseek-runtime", "serve"]
    args = container["args"]
    assert args[args.index("--nnodes") + 1] == "2" and args[args.index("--master-port") + 1]
    env = _env(container)
    plan = plan_deployment(spec(engine={"kind": "native"}), inventory(pool(H100, 2)))
    # a group cannot size its cache from one GPU's dummy batch: the plan's budget is passed
    assert env["DSR_KV_CACHE_MEMORY_BYTES"] == str(plan.kv_cache_bytes_per_gpu)
    one = _env(_engine_container(model_name=QWEN_14B, nodes=pool(A100, 1)))
    assert "DSR_KV_CACHE_MEMORY_BYTES" not in one  # one GPU: sized from its memory
