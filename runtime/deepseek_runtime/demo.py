"""Demo: serve a tiny checkpoint locally and stream a chat completion through the openai client.

``python -m deepseek_runtime.demo`` makes (or reuses) a tiny DeepSeek-V3-architecture
checkpoint in a cache directory and trains it for about a minute of CPU time on the text
the package ships (``checkpoint/tiny_train.py``, cached by content hash, so later runs
take seconds), prints its model card (what it is: a toy, not DeepSeek), starts
``deepseek-runtime serve`` on a free loopback port, prints the tokens of a streamed,
greedy chat completion as they arrive (English-like text recalled from that corpus),
then stops the server with SIGTERM (the graceful drain) and reports its exit code.
Wired into ``make demo`` by the Makefile.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TRAIN_SECONDS = 60.0


def _checkpoint(cache: Path, train_seconds: float) -> Path:
    from deepseek_runtime.checkpoint.make_tiny import make_tiny_checkpoint  # noqa: PLC0415
    from deepseek_runtime.checkpoint.tiny_train import CARD, train_checkpoint  # noqa: PLC0415

    out = cache / f"tiny-deepseek-v3-trained-{train_seconds:g}s"
    trained = train_seconds > 0
    if not (out / "config.json").is_file() or (trained and not (out / CARD).is_file()):
        print(f"[demo] writing a tiny DeepSeek-V3-architecture checkpoint to {out}", flush=True)
        make_tiny_checkpoint(out, arch="v3", seed=0)
        if trained:
            print(
                f"[demo] training it for {train_seconds:g} CPU seconds on the shipped text "
                "(cached by content hash: only the first run pays this)",
                flush=True,
            )
            report = train_checkpoint(out, "v3", train_seconds)
            print(
                f"[demo] trained: {report.steps} steps, loss {report.loss_first:.2f} -> "
                f"{report.loss_last:.2f}",
                flush=True,
            )
    if trained:
        card = (out / CARD).read_text(encoding="utf-8").strip()
        print("[demo] model card:\n" + "\n".join(f"    {line}" for line in card.splitlines()))
    else:
        print("[demo] random weights, not trained: the text will be gibberish", flush=True)
    return out


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:.0f}s")


def run_demo(cache: Path, prompt: str, max_tokens: int, train_seconds: float) -> int:
    import openai  # noqa: PLC0415

    model_dir = _checkpoint(cache, train_seconds)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(cache / "demo-server.log", "wb")  # noqa: SIM115
    cmd = [
        sys.executable,
        "-m",
        "deepseek_runtime.cli",
        "serve",
        "--model",
        str(model_dir),
        "--port",
        str(port),
        "--served-model-name",
        "deepseek-tiny",
    ]
    print(f"[demo] $ deepseek-runtime serve --model {model_dir} --port {port}", flush=True)
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:
        _wait_ready(url, proc, 180)
        print(
            f"[demo] ready at {url}; streaming a chat completion via the openai client:", flush=True
        )
        client = openai.OpenAI(base_url=url + "/v1", api_key="demo")
        started = time.perf_counter()
        first: float | None = None
        tokens = 0
        usage = None
        stream = client.chat.completions.create(
            model="deepseek-tiny",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            # greedy with a repetition penalty: the toy recalls its corpus instead of
            # looping on one phrase
            temperature=0,
            extra_body={"repetition_penalty": 1.3},
        )
        print("[assistant] ", end="", flush=True)
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    first = first or time.perf_counter()
                    tokens += 1
                    print(choice.delta.content, end="", flush=True)
        elapsed = time.perf_counter() - started
        print()
        ttft = (first - started) * 1000 if first else float("nan")
        print(
            f"[demo] {tokens} chunks in {elapsed:.2f}s, first after {ttft:.0f} ms; "
            f"usage: {usage.model_dump() if usage else None}",
            flush=True,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        log.close()
        print(f"[demo] server drained and exited with code {code}", flush=True)
    return 0 if code == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepseek-runtime",
        help="where the tiny checkpoint is kept",
    )
    parser.add_argument("--prompt", default="Tell me about the scheduler.")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument(
        "--train-seconds",
        type=float,
        default=TRAIN_SECONDS,
        help="CPU seconds of training for the toy checkpoint (0: random weights)",
    )
    args = parser.parse_args(argv)
    try:
        args.cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        args.cache = Path(tempfile.mkdtemp(prefix="deepseek-demo-"))
    return run_demo(args.cache, args.prompt, args.max_tokens, args.train_seconds)


if __name__ == "__main__":
    sys.exit(main())
