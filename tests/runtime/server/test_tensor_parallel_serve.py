"""``serve --tensor-parallel-size 2`` through the OpenAI API: the TP=1 tokens, and failing fast.

Real ``serve`` processes on loopback (CPU, fp32, gloo): rank 0 is the server, rank 1 the
worker it spawns. Greedy tokens must be identical and logprobs agree within 1e-4 with
TP=1 on tiny V3 (q_lora on and off), V2, Qwen2 (KV heads split) and Llama (one KV head,
replicated); each rank's resident weights are the replicated ones plus half the rest.
Killing the worker (SIGKILL) must end the group with a non-zero exit within seconds and
give the in-flight request an error, not a hang.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from safetensors import safe_open
from server_harness import ServerProcess

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.model.runner import ModelRunner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

TP = 2
LOGPROB_TOL = 1e-4
PROMPTS = [[5, 6, 7, 8, 9], [11, 3, 200, 17]]
ARGS = ["--num-blocks", "64", "--dtype", "float32", "--device", "cpu"]
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "v3": ("v3", {}),
    "v3-no-q-lora": ("v3", {"q_lora_rank": None}),
    "v2": ("v2", {}),
    "qwen2": ("qwen2", {}),
    "llama": ("llama", {}),
}
# Tensors every rank holds whole: norms, the router, MLA's shared latent projections,
# and GQA K/V when there are fewer KV heads than ranks.
REPLICATED = r"norm\.weight$|\.mlp\.gate\.|q_a_proj|kv_a_proj_with_mqa"


def _greedy(proc: ServerProcess, model: str) -> list[tuple[list[str], list[float]]]:
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="none", timeout=60)
    out = client.completions.create(
        model=model, prompt=PROMPTS, max_tokens=8, temperature=0, logprobs=1
    )
    rows = sorted(out.choices, key=lambda c: c.index)
    return [
        (list(c.logprobs.tokens or []), list(c.logprobs.token_logprobs or []))
        for c in rows
        if c.logprobs is not None
    ]


def _rank_bytes(log: str) -> dict[int, int]:
    found: dict[int, int] = {}
    for line in log.splitlines():
        if '"tensor-parallel rank loaded"' in line:
            entry = json.loads(line[line.index("{") :])
            found[int(entry["rank"])] = int(entry["weight_bytes"])
    return found


def _replicated_bytes(path: Path, kv_replicated: bool) -> int:
    pattern = re.compile(REPLICATED + (r"|k_proj|v_proj" if kv_replicated else ""))
    total = 0
    for name in sorted(path.glob("*.safetensors")):
        with safe_open(str(name), "pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                if pattern.search(key):
                    total += math.prod(f.get_slice(key).get_shape()) * 4
    return total


@pytest.mark.parametrize("name", list(MODELS))
def test_tp2_serves_the_tp1_greedy_tokens(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    arch, overrides = MODELS[name]
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / name, arch, 0, overrides)
    logs = tmp_path_factory.mktemp("logs")
    results, rank_bytes = [], {}
    for tp in (1, TP):
        proc = ServerProcess(path, args=[*ARGS, "--tensor-parallel-size", str(tp)])
        proc.start(logs)
        try:
            results.append(_greedy(proc, path.name))
        finally:
            assert proc.stop() == 0, proc.log()
        if tp > 1:
            rank_bytes = _rank_bytes(proc.log())
    single, split = results
    assert [tokens for tokens, _ in split] == [tokens for tokens, _ in single]
    for (_, want), (_, got) in zip(single, split, strict=True):
        assert max(abs(a - b) for a, b in zip(want, got, strict=True)) <= LOGPROB_TOL

    # torch's GEMMs: the packed layout pads each linear to 16 rows, which is not sharding
    whole = ModelRunner.from_pretrained(
        path, num_blocks=4, cpu_kernels="torch"
    ).resident_weight_bytes()
    replicated = _replicated_bytes(path, kv_replicated=arch == "llama")
    assert sorted(rank_bytes) == list(range(TP))
    for rank, held in rank_bytes.items():
        want = replicated + (whole - replicated) / TP
        assert held == pytest.approx(want, rel=1e-3), (rank, held, want, whole)
        assert held < 0.6 * whole


def _worker_pids(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (the workers are spawned from a loader thread)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return sorted(int(c) for task in tasks for c in (task / "children").read_text().split())


def test_killed_worker_takes_the_group_down(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "v3", "v3", 0)
    proc = ServerProcess(path, args=[*ARGS, "--tensor-parallel-size", str(TP)])
    proc.start(tmp_path_factory.mktemp("logs"))
    assert proc.proc is not None
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key="none", timeout=30, max_retries=0)
    started, outcome = threading.Event(), {}

    def stream() -> None:
        try:
            events = client.completions.create(
                model=path.name, prompt=PROMPTS[0], max_tokens=900, temperature=0, stream=True
            )
            for event in events:
                started.set()
                outcome["finish"] = event.choices[0].finish_reason if event.choices else None
            outcome["ended"] = "normally"
        except openai.APIError as exc:
            outcome["error"] = type(exc).__name__
        finally:
            started.set()

    thread = threading.Thread(target=stream, daemon=True)
    try:
        thread.start()
        assert started.wait(60), "no token streamed"
        workers = _worker_pids(proc.proc.pid)
        assert len(workers) == TP - 1, workers
        killed_at = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        code = proc.proc.wait(timeout=15)
        took = time.monotonic() - killed_at
        thread.join(15)
    finally:
        proc.stop()
    assert code != 0, proc.log()
    assert took < 10, f"the group took {took:.1f} s to exit"
    assert not thread.is_alive(), "the in-flight request hung"
    assert outcome.get("error") or outcome.get("finish") == "error", outcome
    assert "parallel rank 1 exited" in proc.log()
