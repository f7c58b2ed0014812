"""Expert, pipeline and deeper tensor parallelism through the OpenAI API: the TP=1 tokens.

Real ``serve`` processes on loopback (CPU, fp32, gloo). For each layout the greedy tokens
must be identical and the logprobs agree within 1e-4 with a TP=1 server on the same
checkpoint:

* EP=2 (``--tensor-parallel-size 2 --enable-expert-parallel``: attention and shared
  experts split by TP, the routed experts partitioned) on tiny V3 (sigmoid routing with
  groups, q_lora, a dense first layer), V2 (softmax group-limited routing, no q_lora) and
  an FP8 block-scaled V3 checkpoint;
* TP=4 on V3; PP=2 on V3 and on Qwen2; TP=2 x PP=2 on V3.

Every rank logs the bytes it really holds; they must equal what its stage's tensors come
to when the split ones are divided by TP (norms, the router, MLA's latent projections and
the final norm are whole on every rank; the embedding lives on the first stage, the
``lm_head`` on the last). The same formula at TP=1 must give the whole model's bytes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from parallel_greedy import ARGS, assert_same_greedy, greedy
from safetensors import safe_open
from server_harness import ServerProcess

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.model.runner import ModelRunner
from deepseek_runtime.parallel.pipeline import partition_layers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MODELS: dict[str, dict[str, Any]] = {
    "v3": {"arch": "v3"},
    "v2": {"arch": "v2"},
    "v3-fp8": {"arch": "v3", "fp8": True, "fp8_block": 16},
    "qwen2": {"arch": "qwen2"},
}
EP = ["--enable-expert-parallel"]
LAYOUTS: dict[str, tuple[str, int, int, list[str]]] = {
    # name: (model, tensor, pipeline, extra flags)
    "ep2-v3": ("v3", 2, 1, EP),
    "ep2-v2": ("v2", 2, 1, EP),
    "ep2-v3-fp8": ("v3-fp8", 2, 1, EP),
    "tp4-v3": ("v3", 4, 1, []),
    "pp2-v3": ("v3", 1, 2, []),
    "pp2-qwen2": ("qwen2", 1, 2, []),
    "tp2pp2-v3": ("v3", 2, 2, []),
}
REPLICATED = re.compile(r"norm\.weight$|\.mlp\.gate\.|q_a_proj|kv_a_proj_with_mqa")
LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def rank_bytes(log: str) -> dict[int, int]:
    """``rank -> resident weight bytes`` from the ranks' "rank loaded" log lines.

    The ranks share one log file, so a line may hold another process's record right
    after this one (no newline between two writers): every JSON object on the line is read.
    """
    found: dict[int, int] = {}
    decoder = json.JSONDecoder()
    for line in log.splitlines():
        at = line.find("{")
        while at != -1:
            try:
                entry, end = decoder.raw_decode(line, at)
            except json.JSONDecodeError:
                at = line.find("{", at + 1)
                continue
            if isinstance(entry, dict) and entry.get("message") == "tensor-parallel rank loaded":
                found[int(entry["rank"])] = int(entry["weight_bytes"])
            at = line.find("{", end)
    return found


def expected_rank_bytes(path: Path, tensor: int, pipeline: int) -> list[int]:
    """Per stage: its tensors' fp32 bytes, split ones divided by ``tensor``."""
    layers = json.loads((path / "config.json").read_text())["num_hidden_layers"]
    stages = partition_layers(layers, pipeline)
    totals = [0.0] * pipeline
    for name in sorted(path.glob("*.safetensors")):
        with safe_open(str(name), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if key.endswith("_scale_inv"):
                    continue  # FP8 scales: the weights are dequantized to fp32 at load
                size = math.prod(f.get_slice(key).get_shape()) * 4
                share = size if REPLICATED.search(key) else size / tensor
                layer = LAYER.match(key)
                if layer:
                    owners = [s for s, r in enumerate(stages) if int(layer.group(1)) in r]
                elif key == "model.norm.weight":
                    owners = list(range(pipeline))
                elif key == "model.embed_tokens.weight":
                    owners = [0]
                else:  # lm_head
                    owners = [pipeline - 1]
                for stage in owners:
                    totals[stage] += share
    return [round(t) for t in totals]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {
        name: make_tiny_checkpoint(
            root / name,
            spec["arch"],
            0,
            fp8=spec.get("fp8", False),
            fp8_block=spec.get("fp8_block", 128),
        )
        for name, spec in MODELS.items()
    }


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """TP=1 greedy results per model, computed on first use."""
    return {"logs": tmp_path_factory.mktemp("logs")}


def tp1_greedy(
    name: str, checkpoints: dict[str, Path], baselines: dict[str, Any]
) -> list[tuple[list[str], list[float]]]:
    if name not in baselines:
        proc = ServerProcess(checkpoints[name], args=ARGS).start(baselines["logs"])
        try:
            baselines[name] = greedy(proc, checkpoints[name].name)
        finally:
            assert proc.stop() == 0, proc.log()
    result: list[tuple[list[str], list[float]]] = baselines[name]
    return result


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_serves_the_tp1_greedy_tokens(
    layout: str,
    checkpoints: dict[str, Path],
    baselines: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    model, tensor, pipeline, extra = LAYOUTS[layout]
    path = checkpoints[model]
    want = tp1_greedy(model, checkpoints, baselines)
    flags = [*ARGS, "--tensor-parallel-size", str(tensor)]
    flags += ["--pipeline-parallel-size", str(pipeline), *extra]
    proc = ServerProcess(path, args=flags).start(tmp_path_factory.mktemp("logs"), timeout=240)
    try:
        got = greedy(proc, path.name)
    finally:
        assert proc.stop() == 0, proc.log()
    assert_same_greedy(want, got)

    held = rank_bytes(proc.log())
    assert sorted(held) == list(range(tensor * pipeline)), proc.log()
    per_stage = expected_rank_bytes(path, tensor, pipeline)
    for rank, nbytes in held.items():
        assert nbytes == pytest.approx(per_stage[rank // tensor], rel=1e-3), (rank, held)
    # torch's GEMMs: the packed layout pads each linear to 16 rows, which is not sharding
    whole = ModelRunner.from_pretrained(
        path, num_blocks=4, cpu_kernels="torch"
    ).resident_weight_bytes()
    assert expected_rank_bytes(path, 1, 1) == [pytest.approx(whole, rel=1e-3)]
    assert max(held.values()) < 0.8 * whole
