"""One real ``deepseek-runtime serve`` process per Running pod, on the pod's loopback twin.

kwok only pretends to run containers. The fleet turns a pod's container spec into a real
process: the same command, arguments and environment the operator rendered, with three
substitutions that a kubelet would otherwise provide (:func:`runtime_command`):

- ``--model`` points at the local tiny checkpoint instead of the pod's volume mount;
- ``--host`` is the pod IP's loopback address (:func:`e2e.live.network.loopback_address`);
- ``fieldRef`` environment (``POD_NAME``...) is resolved from the pod, and torch gets one
  thread (``OMP_NUM_THREADS=1``) and a small KV cache (``DSR_NUM_BLOCKS``, unless the pod
  sets it) so several runtimes share a 2-core CI machine.

Everything else (``engine.args``, the ``DSR_*`` settings) is the pod's, so a spec change
that rolls out a new revision really changes how that revision's runtimes behave.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from e2e.live.network import POD_NETWORK, loopback_address

RUNTIME_COMMAND = ("deepseek-runtime", "serve")
# Valued options the fleet replaces; the harness owns where the model and socket are.
_REPLACED = {"--model", "--host"}
# KV blocks per runtime unless the pod sets DSR_NUM_BLOCKS: on CPU the runtime would size the
# cache from host memory (GiBs per process); 4096 x 16 tokens holds a 32k context.
KV_BLOCKS = 4096


@dataclass(frozen=True)
class RuntimeLaunch:
    """What to exec for one pod."""

    argv: list[str]
    env: dict[str, str]
    host: str
    port: int
    ready_path: str = "/ready"


def _field_ref(pod: dict[str, Any], path: str) -> str:
    meta = pod["metadata"]
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "status.podIP": pod["status"].get("podIP", ""),
    }
    if path.startswith("metadata.labels['"):
        return str(meta.get("labels", {}).get(path[len("metadata.labels['") : -2], ""))
    return str(values.get(path, ""))


def serving_container(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The container that runs ``deepseek-runtime serve`` (None for other engines/pods)."""
    for c in pod["spec"].get("containers", []):
        if tuple(c.get("command") or [])[:2] == RUNTIME_COMMAND:
            return dict(c)
    return None


def runtime_command(pod: dict[str, Any], checkpoint: Path, bin_dir: Path) -> RuntimeLaunch:
    """The process that stands in for ``pod`` (see the module docstring)."""
    container = serving_container(pod)
    if container is None:
        raise ValueError(f"pod {pod['metadata']['name']} runs no `deepseek-runtime serve`")
    host = loopback_address(pod["status"]["podIP"])
    args = list(container.get("args") or [])
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _REPLACED:
            skip = "=" not in arg and i + 1 < len(args)
            continue
        out.append(arg)
    port = next(
        (int(p["containerPort"]) for p in container.get("ports", []) if p.get("name") == "http"),
        8000,
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k in {"PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH"}
    }
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif ref := (item.get("valueFrom") or {}).get("fieldRef"):
            env[item["name"]] = _field_ref(pod, str(ref["fieldPath"]))
    env.pop("HOME", None)  # the pod's HOME=/tmp is fine; keep the harness's XDG dirs off /
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.setdefault("DSR_NUM_BLOCKS", str(KV_BLOCKS))
    argv = [str(bin_dir / RUNTIME_COMMAND[0]), RUNTIME_COMMAND[1], *out]
    argv += ["--model", str(checkpoint), "--host", host]
    probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
    return RuntimeLaunch(
        argv=argv, env=env, host=host, port=port, ready_path=str(probe.get("path", "/ready"))
    )


@dataclass
class Runtime:
    """A started runtime and when it became ready (monotonic seconds)."""

    pod: str
    namespace: str
    revision: str
    track: str
    launch: RuntimeLaunch
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://{self.launch.host}:{self.launch.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None


class Fleet:
    """Starts, health-checks and stops runtimes to match a list of pods (not thread-safe;
    the harness loop is its only caller)."""

    def __init__(self, checkpoint: Path, log_dir: Path, bin_dir: Path | None = None) -> None:
        self.checkpoint = checkpoint
        self.log_dir = log_dir
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self.runtimes: dict[str, Runtime] = {}  # pod uid -> runtime
        self.ready_log: list[tuple[str, float, float]] = []  # (pod, started, ready)
        self._http = httpx.Client(timeout=1.0)
        log_dir.mkdir(parents=True, exist_ok=True)

    def sync(self, pods: list[dict[str, Any]]) -> None:
        """Start a runtime for each new Running pod, stop those whose pod is gone/terminating."""
        wanted: dict[str, dict[str, Any]] = {}
        for pod in pods:
            ip = pod.get("status", {}).get("podIP") or ""
            running = pod.get("status", {}).get("phase") == "Running"
            if not running or pod["metadata"].get("deletionTimestamp") or not _in_network(ip):
                continue
            if serving_container(pod) is not None:
                wanted[pod["metadata"]["uid"]] = pod
        for uid in [u for u in self.runtimes if u not in wanted]:
            self._stop(self.runtimes.pop(uid))
        for uid, pod in wanted.items():
            if uid not in self.runtimes:
                self.runtimes[uid] = self._start(pod)
        self._probe()

    def _start(self, pod: dict[str, Any]) -> Runtime:
        launch = runtime_command(pod, self.checkpoint, self.bin_dir)
        meta = pod["metadata"]
        labels = meta.get("labels", {})
        log_file = (self.log_dir / f"{meta['namespace']}_{meta['name']}.log").open("ab")
        proc = subprocess.Popen(
            launch.argv,
            env=launch.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return Runtime(
            pod=meta["name"],
            namespace=meta["namespace"],
            revision=labels.get("deepseek.ai/revision", ""),
            track=labels.get("deepseek.ai/track", ""),
            launch=launch,
            proc=proc,
            log_file=log_file,
        )

    def _probe(self) -> None:
        for rt in self.runtimes.values():
            if rt.ready_at is not None or not rt.alive():
                continue
            try:
                ok = self._http.get(rt.url + rt.launch.ready_path).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                rt.ready_at = time.monotonic()
                self.ready_log.append((rt.pod, rt.started, rt.ready_at))

    def _stop(self, rt: Runtime, timeout: float = 10) -> None:
        if rt.alive():
            rt.proc.send_signal(signal.SIGTERM)
            try:
                rt.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                rt.proc.kill()
                rt.proc.wait(5)
        rt.log_file.close()

    def stop_all(self) -> None:
        for rt in self.runtimes.values():
            if rt.alive():
                rt.proc.send_signal(signal.SIGTERM)
        for rt in list(self.runtimes.values()):
            self._stop(rt)
        self.runtimes.clear()
        self._http.close()


def _in_network(ip: str) -> bool:
    try:
        return ipaddress.IPv4Address(ip) in POD_NETWORK
    except ValueError:
        return False
