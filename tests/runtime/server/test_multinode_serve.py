"""Two ``serve`` nodes on loopback form one group: the TP=1 tokens, and dying together.

Real processes, CPU, fp32, gloo. Node rank, leader address and group size come from the
LeaderWorkerSet's variables (``LWS_WORKER_INDEX``, ``LWS_LEADER_ADDRESS``,
``LWS_GROUP_SIZE``), as in a pod; node 0 serves the API and node 1 health only.

* ``--tensor-parallel-size 2 --nnodes 2`` (one rank per node): greedy tokens identical
  and logprobs within 1e-4 of a TP=1 server; SIGKILL of node 1 makes node 0 exit
  non-zero within seconds.
* The command the operator renders for ``manifests/samples/r1-h100-multinode.yaml`` with
  ``engine.kind: native`` (both pods' argv and environment as rendered; model path, ports
  and the parallel degrees scaled down to the tiny model: PP=2, one stage per node):
  the same tokens; SIGKILL of node 0 makes node 1 exit non-zero within seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from parallel_greedy import ARGS, assert_same_greedy, greedy
from server_harness import REPO, ServerProcess, free_port

from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BIN = Path(sys.executable).parent
EXIT_WITHIN_S = 10.0


def _port_pair() -> int:
    """A port ``p`` with ``p + 1`` free too (torch.distributed and the liveness link)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def _lws_env(index: int) -> dict[str, str]:
    return {
        "LWS_LEADER_ADDRESS": "127.0.0.1",
        "LWS_GROUP_SIZE": "2",
        "LWS_WORKER_INDEX": str(index),
    }


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            argv,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"not ready in {timeout} s:\n{log.read_text(errors='replace')}")


def _exits_non_zero_soon(proc: subprocess.Popen[bytes], log: Path) -> float:
    started = time.monotonic()
    try:
        code = proc.wait(timeout=EXIT_WITHIN_S + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"still running:\n{log.read_text(errors='replace')}") from None
    took = time.monotonic() - started
    assert code != 0, log.read_text(errors="replace")
    assert took < EXIT_WITHIN_S, f"took {took:.1f} s to exit"
    return took


def _stop(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    # the rendered command asks for maxModelLen 16384: give the tiny model room for it
    path = make_tiny_checkpoint(root / "DeepSeek-R1", "v3", 0, {"max_position_embeddings": 32768})
    return Path(path)


@pytest.fixture(scope="module")
def tp1(v3: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[list[str], list[float]]]:
    proc = ServerProcess(v3, args=ARGS).start(tmp_path_factory.mktemp("logs"))
    try:
        return greedy(proc, v3.name)
    finally:
        assert proc.stop() == 0, proc.log()


def test_two_nodes_serve_the_tp1_tokens_and_a_dead_worker_node_ends_the_leader(
    v3: Path, tp1: list[tuple[list[str], list[float]]], tmp_path: Path
) -> None:
    master, worker_port = _port_pair(), free_port()
    flags = [*ARGS, "--tensor-parallel-size", "2", "--master-port", str(master)]
    serve = [sys.executable, "-m", "deepseek_runtime.cli", "serve", "--model", str(v3)]
    worker_log = tmp_path / "node1.log"
    worker = _start([*serve, *flags, "--port", str(worker_port)], _lws_env(1), worker_log)
    leader: ServerProcess | None = None
    try:
        leader = ServerProcess(v3, args=flags, env=_lws_env(0)).start(tmp_path, timeout=240)
        _wait_ready(worker, worker_port, worker_log, 30)
        assert_same_greedy(tp1, greedy(leader, v3.name))
        node1 = f"http://127.0.0.1:{worker_port}"
        assert httpx.get(node1 + "/health", timeout=5).status_code == 200
        assert httpx.get(node1 + "/v1/models", timeout=5).status_code == 404  # health only
        worker.send_signal(signal.SIGKILL)
        assert leader.proc is not None and leader.log_path is not None
        _exits_non_zero_soon(leader.proc, leader.log_path)
        assert "a worker node is gone" in leader.log()
    finally:
        _stop(worker, leader.proc if leader else None)


def _render_native_multinode(tmp_path: Path) -> dict[str, Any]:
    sample = yaml.safe_load((REPO / "manifests/samples/r1-h100-multinode.yaml").read_text())
    sample["spec"]["engine"] = {"kind": "native"}
    path = tmp_path / "r1-native.yaml"
    path.write_text(yaml.safe_dump(sample))
    out = subprocess.run(
        [str(BIN / "deepseek-operator"), "render", "-f", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    for doc in yaml.safe_load_all(out):
        if doc and doc.get("kind") == "LeaderWorkerSet":
            return dict(doc["spec"]["leaderWorkerTemplate"])
    raise AssertionError("no LeaderWorkerSet rendered")


def _localise(container: dict[str, Any], model: Path, port: int, master: int) -> list[str]:
    argv = [*container["command"], *container.get("args", [])]
    assert argv[:2] == ["deepseek-runtime", "serve"], argv
    argv[0] = str(BIN / "deepseek-runtime")
    replace = {"--model": str(model), "--host": "127.0.0.1", "--port": str(port)}
    replace["--master-port"] = str(master)
    for i, arg in enumerate(argv[:-1]):
        if arg in replace:
            argv[i + 1] = replace[arg]
    return argv


def _env(container: dict[str, Any]) -> dict[str, str]:
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    assert env["DSR_TENSOR_PARALLEL_SIZE"] == "8" and env["DSR_PIPELINE_PARALLEL_SIZE"] == "2"
    # a group's KV cache is the planner's per-GPU budget (tens of GiB here): the tiny
    # model gets a fixed block count instead
    assert int(env.pop("DSR_KV_CACHE_MEMORY_BYTES")) > 1 << 30
    # the layout scaled to the tiny model (4 heads): one pipeline stage per node
    env |= {"DSR_TENSOR_PARALLEL_SIZE": "1", "DSR_PIPELINE_PARALLEL_SIZE": "2"}
    env |= {"DSR_NUM_BLOCKS": "1100", "DSR_DTYPE": "float32", "HOME": os.environ.get("HOME", "/")}
    env.pop("XDG_CACHE_HOME", None)
    return env


def test_the_rendered_multinode_command_forms_a_group_and_a_dead_leader_ends_it(
    v3: Path, tp1: list[tuple[list[str], list[float]]], tmp_path: Path
) -> None:
    template = _render_native_multinode(tmp_path)
    assert template["size"] == 2
    leader_c = template["leaderTemplate"]["spec"]["containers"][0]
    worker_c = template["workerTemplate"]["spec"]["containers"][0]
    assert leader_c["command"] == worker_c["command"] == ["deepseek-runtime", "serve"]
    assert leader_c["args"] == worker_c["args"]
    args = leader_c["args"]
    assert args[args.index("--nnodes") + 1] == "2" and "--node-rank" not in args
    assert args[args.index("--master-port") + 1] == "29500" and "--master-addr" not in args

    master, leader_port, worker_port = _port_pair(), free_port(), free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("node0", "node1")}
    leader = worker = None
    try:
        worker = _start(
            _localise(worker_c, v3, worker_port, master),
            {**_env(worker_c), **_lws_env(1)},
            logs["node1"],
        )
        leader = _start(
            _localise(leader_c, v3, leader_port, master),
            {**_env(leader_c), **_lws_env(0)},
            logs["node0"],
        )
        _wait_ready(leader, leader_port, logs["node0"], 240)
        _wait_ready(worker, worker_port, logs["node1"], 30)
        proc = ServerProcess(v3, port=leader_port)
        name = next(e["value"] for e in leader_c["env"] if e["name"] == "DSR_SERVED_MODEL_NAME")
        assert_same_greedy(tp1, greedy(proc, name))
        leader.send_signal(signal.SIGKILL)
        _exits_non_zero_soon(worker, logs["node1"])
        assert "the leader is gone" in logs["node1"].read_text()
    finally:
        _stop(worker, leader)
