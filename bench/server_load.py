"""Open-loop load on the HTTP server at rising request rates, against the engine driven directly.

Run: ``.venv/bin/python bench/server_load.py [--rates 2,4,8,16,32] [--requests 48]``.

One random-weight DeepSeek-V3 checkpoint (``make-tiny`` with ``--size`` overrides) is
served by ``deepseek-runtime serve`` on a free loopback port.
For each rate, ``--requests`` streamed ``/v1/completions`` arrive as a Poisson process
(fixed seed); every request has its own prompt (token ids) and produces exactly
``--max-tokens`` tokens (EOS ignored). The same arrival schedule is then replayed against
``NativeAsyncEngine`` in this process (no HTTP), so the two differ only by the HTTP layer.
Both paths ask for ``logprobs=0`` so each streamed chunk says how many tokens it carries.
TTFT is the time from sending to the first token; ITL the gap between streamed chunks
divided by the tokens they carry; throughput is output tokens over the span from the
first arrival to the last completion. Prints one JSON object: per rate and path,
throughput, TTFT and ITL p50/p99; the first rate whose p99 TTFT passes 2 s (null if none
does); and ``http_throughput_loss`` = 1 - HTTP/direct throughput in a final burst level
(all requests at t=0, i.e. at saturation, where the HTTP layer's cost shows), best of
``--repeats`` alternating runs of each (target ≤ 0.10). HTTP and direct runs alternate
so drift in the machine's load hits both; a warm-up precedes the measurements. Since
wall-clock figures on a shared host are noisy, the burst level also reports CPU seconds
per 1k output tokens of the server process (HTTP path), of the load client, and of this
process driving the engine directly; ``http_server_cpu_overhead`` is the server's extra
CPU per token over the direct path (the HTTP layer's cost, independent of other load).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psutil

from bench_models import BENCH_MODEL
from deepseek_runtime.backends import NativeEngineOptions
from deepseek_runtime.backends.native import build_async_engine
from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint
from deepseek_runtime.engine import NativeAsyncEngine, SamplingParams
from deepseek_runtime.server.backend_options import backend_options
from deepseek_runtime.server.config import ServerConfig

TTFT_LIMIT_S = 2.0

# "small": bench_models.BENCH_MODEL, shared with engine_cpu.py (a step takes tens of ms on
# CPU, closer to a real model's step on a GPU); "tiny": make-tiny's defaults (a step takes
# ~ms, so the per-chunk cost of HTTP + JSON is a large share: the worst case for the HTTP layer).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {},
    "small": BENCH_MODEL,
}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _summary(results: list[dict[str, Any]], span: float, max_tokens: int) -> dict[str, Any]:
    ok = [r for r in results if r.get("ok")]
    ttft = [r["ttft"] for r in ok]
    itl = [g for r in ok for g in r["itl"]]
    tpot = [r["tpot"] for r in ok if r["tpot"] is not None]
    tokens = sum(r["tokens"] for r in ok)
    return {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "output_tokens_per_s": round(tokens / span, 2) if span > 0 else None,
        "requests_per_s": round(len(ok) / span, 3) if span > 0 else None,
        "ttft_p50_s": _r(_pct(ttft, 50)),
        "ttft_p99_s": _r(_pct(ttft, 99)),
        "itl_p50_s": _r(_pct(itl, 50)),
        "itl_p99_s": _r(_pct(itl, 99)),
        "tpot_p50_s": _r(_pct(tpot, 50)),
        "tpot_p99_s": _r(_pct(tpot, 99)),
        "tokens_per_request": max_tokens,
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 5)


def _record(start: float, stamps: list[tuple[float, int]]) -> dict[str, Any]:
    if not stamps:
        return {"ok": False}
    itl = []
    for (t0, _), (t1, n) in itertools.pairwise(stamps):
        itl += [(t1 - t0) / n] * n
    tokens = sum(n for _, n in stamps)
    tpot = (stamps[-1][0] - stamps[0][0]) / (tokens - 1) if tokens > 1 else None
    return {
        "ok": True,
        "ttft": stamps[0][0] - start,
        "itl": itl,
        "tpot": tpot,
        "tokens": tokens,
        "end": stamps[-1][0],
    }


async def _run_http(
    url: str, prompts: list[list[int]], arrivals: list[float], max_tokens: int
) -> tuple[list[dict[str, Any]], float]:
    # aiohttp: its C-accelerated HTTP parser keeps the load generator's own CPU cost low
    # (it shares the machine with the server)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()

        async def one(i: int) -> dict[str, Any]:
            await asyncio.sleep(max(0.0, arrivals[i] - (time.perf_counter() - t0)))
            start = time.perf_counter()
            stamps: list[tuple[float, int]] = []
            body = {
                "model": "bench",
                "prompt": prompts[i],
                "max_tokens": max_tokens,
                "stream": True,
                "ignore_eos": True,
                "temperature": 0,
                "logprobs": 0,
            }
            async with session.post("/v1/completions", json=body) as resp:
                if resp.status != 200:
                    await resp.read()
                    return {"ok": False, "status": resp.status}
                async for raw in resp.content:
                    line = raw.strip()
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    choice = json.loads(line[6:])["choices"][0]
                    # logprobs=0 lists the chunk's tokens (the engine may coalesce steps)
                    n = len((choice.get("logprobs") or {}).get("tokens") or [])
                    if n:
                        stamps.append((time.perf_counter(), n))
            return _record(start, stamps)

        results = await asyncio.gather(*(one(i) for i in range(len(prompts))))
        span = max((r["end"] for r in results if r.get("ok")), default=t0) - t0
        return list(results), span


async def _run_direct(
    engine: NativeAsyncEngine,
    prompts: list[list[int]],
    arrivals: list[float],
    max_tokens: int,
    tag: str,
) -> tuple[list[dict[str, Any]], float]:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, logprobs=0)
    t0 = time.perf_counter()

    async def one(i: int) -> dict[str, Any]:
        await asyncio.sleep(max(0.0, arrivals[i] - (time.perf_counter() - t0)))
        start = time.perf_counter()
        stamps: list[tuple[float, int]] = []
        async for out in engine.generate(f"{tag}-{i}", prompts[i], params):
            if out.new_token_ids:
                stamps.append((time.perf_counter(), len(out.new_token_ids)))
        return _record(start, stamps)

    results = await asyncio.gather(*(one(i) for i in range(len(prompts))))
    span = max((r["end"] for r in results if r.get("ok")), default=t0) - t0
    return list(results), span


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    t = proc.cpu_times()
    return float(t.user + t.system)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(model: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepseek_runtime.cli",
            "serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--served-model-name",
            "bench",
            "--log-level",
            "warning",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rates", default="2,4,8,16,32", help="requests/s, comma-separated")
    ap.add_argument("--requests", type=int, default=48, help="requests per rate")
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--size", choices=sorted(SIZES), default="small", help="model shape")
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="alternating burst repeats")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    overrides = SIZES[args.size]

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(
            make_tiny_checkpoint(
                Path(tmp) / "bench", arch="v3", seed=0, overrides=overrides or None
            )
        )
        extra = ["--max-num-seqs", str(args.max_num_seqs), "--max-waiting", "100000"]
        config = ServerConfig(model=str(model), max_num_seqs=args.max_num_seqs, max_waiting=100000)
        rng = random.Random(args.seed)
        vocab = 200  # plain byte-level tokens of the tiny tokenizer
        report: dict[str, Any] = {
            "rates": [],
            "config": {
                "requests_per_rate": args.requests,
                "prompt_tokens": args.prompt_tokens,
                "max_tokens": args.max_tokens,
                "size": args.size,
                "cpus": os.cpu_count(),
            },
        }
        plans = []
        for rate in [*rates, float("inf")]:  # inf: every request at t=0 (saturation)
            prompts = [
                [rng.randrange(3, vocab) for _ in range(args.prompt_tokens)]
                for _ in range(args.requests)
            ]
            t, arrivals = 0.0, []
            for _ in range(args.requests):
                t += rng.expovariate(rate) if rate != float("inf") else 0.0
                arrivals.append(t)
            plans.append((rate, prompts, arrivals))

        burst_http: list[float] = []
        burst_direct: list[float] = []
        cpu_server: list[float] = []
        cpu_client: list[float] = []
        cpu_direct: list[float] = []
        me = psutil.Process()
        server: psutil.Process | None = None

        async def run_all(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            options = backend_options(config)  # the server's own mapping, on the CPU
            assert isinstance(options, NativeEngineOptions)
            engine = build_async_engine(dataclasses.replace(options, device="cpu"))
            await engine.start()
            http_out, direct_out = [], []
            try:
                warm = plans[-1][1][:4], [0.0] * 4
                await _run_http(url, *warm, args.max_tokens)
                await _run_direct(engine, *warm, args.max_tokens, "warm")
                for k, (_, prompts, arrivals) in enumerate(plans):
                    # same schedule over HTTP, then straight into the engine; the idle
                    # server process takes no CPU while the direct run goes
                    res, span = await _run_http(url, prompts, arrivals, args.max_tokens)
                    http_out.append(_summary(res, span, args.max_tokens))
                    res, span = await _run_direct(
                        engine, prompts, arrivals, args.max_tokens, f"r{k}"
                    )
                    direct_out.append(_summary(res, span, args.max_tokens))
                # saturation throughput, alternating, best of --repeats each (noisy host),
                # with the CPU seconds each side burns (independent of other load)
                _, prompts, arrivals = plans[-1]
                tokens = len(prompts) * args.max_tokens
                for k in range(args.repeats):
                    s0, c0 = _cpu(server), _cpu(me)
                    res, span = await _run_http(url, prompts, arrivals, args.max_tokens)
                    burst_http.append(_summary(res, span, args.max_tokens)["output_tokens_per_s"])
                    cpu_server.append((_cpu(server) - s0) * 1000 / tokens)
                    cpu_client.append((_cpu(me) - c0) * 1000 / tokens)
                    d0 = _cpu(me)
                    res, span = await _run_direct(
                        engine, prompts, arrivals, args.max_tokens, f"b{k}"
                    )
                    burst_direct.append(_summary(res, span, args.max_tokens)["output_tokens_per_s"])
                    cpu_direct.append((_cpu(me) - d0) * 1000 / tokens)
            finally:
                await engine.shutdown()
            return http_out, direct_out

        proc, url = _start_server(model, extra)
        server = psutil.Process(proc.pid)
        try:
            http_results, direct_results = asyncio.run(run_all(url))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)

    knee = None
    for (rate, _, _), h, d in zip(plans, http_results, direct_results, strict=True):
        report["rates"].append(
            {"rate_rps": rate if rate != float("inf") else "burst", "http": h, "direct": d}
        )
        if knee is None and rate != float("inf") and (h["ttft_p99_s"] or 0) > TTFT_LIMIT_S:
            knee = rate
    report["p99_ttft_exceeds_2s_at_rps"] = knee
    top_h = max(burst_http, default=0.0)
    top_d = max(burst_direct, default=0.0)
    report["saturation_tokens_per_s"] = {"http": burst_http, "direct": burst_direct}
    report["http_throughput_loss"] = round(1 - top_h / top_d, 4) if top_d else None
    report["http_throughput_loss_target"] = 0.10
    med = statistics.median
    report["saturation_cpu_s_per_1k_tokens"] = {
        "http_server_process": round(med(cpu_server), 4),
        "http_load_client": round(med(cpu_client), 4),
        "direct_engine": round(med(cpu_direct), 4),
    }
    report["http_server_cpu_overhead"] = round(med(cpu_server) / med(cpu_direct) - 1, 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
