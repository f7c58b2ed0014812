"""The live data plane for e2e tests: real runtimes for kwok pods, a real Prometheus, load.

API (used by ``e2e/live/test_*.py`` and ``bench/autoscale_e2e.py``; stable)::

    from e2e.live.harness import LiveDataPlane, tiny_checkpoint

    with LiveDataPlane(kubeconfig, workdir, checkpoint=tiny_checkpoint(cache), nodes=2) as live:
        spec = {..., "placement": live.placement,            # land on the live nodes
                "monitoring": {"prometheusAddress": live.prometheus.address}}
        live.watch(namespace)                  # runtimes + scraping for that namespace
        live.wait_runtimes(namespace, 2)       # two runtimes pass their readiness probe
        live.prometheus.value('sum(vllm:num_requests_waiting{namespace="..."})')
        with live.load(namespace, "svc", model, concurrency=6) as load:   # bounded
            ...
        load.stats.statuses                    # Counter of HTTP codes / exception names

- ``LiveDataPlane(kubeconfig, workdir, checkpoint, nodes=2, gpus_per_node=4,
  scrape_interval="1s", poll=0.5)``: on enter creates ``nodes`` kwok Nodes of a fresh live
  pool (L40S, pod CIDRs in 10.77.0.0/16, tainted ``deepseek.ai/live=<pool>``: see
  :mod:`e2e.live.network`), starts Prometheus and a background loop that every ``poll``
  seconds (1) starts one ``deepseek-runtime serve`` per Running pod of the watched
  namespaces on the pod IP's loopback twin and stops it when the pod goes
  (:mod:`e2e.live.runtimes`), and (2) turns the watched namespaces' Services,
  EndpointSlices and ServiceMonitors into Prometheus targets and scrape jobs
  (:mod:`e2e.live.prometheus`). On exit everything stops and the
  nodes are deleted.
- ``live.placement`` -> ``spec.placement`` for the pool; ``live.pool`` its name.
- ``live.watch(ns)`` / ``live.unwatch(ns)``.
- ``live.runtimes(ns)`` -> list of :class:`e2e.live.runtimes.Runtime` (``pod``, ``track``,
  ``revision``, ``url``, ``started``, ``ready_at`` monotonic seconds);
  ``live.wait_runtimes(ns, count, timeout=120, track=None)``.
- ``live.ready_log`` -> ``[(pod, started, ready)]`` for every runtime that became ready.
- ``live.prometheus``: ``address``, ``query(promql)``, ``value(promql)``, ``targets()``;
  ``live.wait_value(promql, predicate, timeout)`` polls a query until ``predicate(value)``.
- ``live.load(ns, service, model, concurrency=4, max_tokens=16, prompt=..., duration=300)``
  -> a started :class:`e2e.live.load.Load` (context manager; ``stop()`` returns stats).

Faults: the runtimes run the pod's own arguments, so a DSD whose ``engine.args`` carry a
runtime flag (e.g. a fault-injection flag, ``--max-num-seqs 1``) gets runtimes that behave
that way; nothing is faked by the harness.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e.devcluster.kube import kubectl
from e2e.devcluster.toolchain import toolchain
from e2e.live.api import ApiCredentials, ApiReader
from e2e.live.load import Load
from e2e.live.network import LIVE_POOL_LABEL, free_subnets, live_node, placement
from e2e.live.prometheus import LivePrometheus
from e2e.live.runtimes import Fleet, Runtime

log = logging.getLogger("e2e.live")
PROMETHEUS_BIN = Path("/usr/bin/prometheus")
MAX_MODEL_LEN = 32768
_COLLECTIONS = {
    "pods": "/api/v1/namespaces/{ns}/pods",
    "services": "/api/v1/namespaces/{ns}/services",
    "slices": "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
    "servicemonitors": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors",
}


def tiny_checkpoint(cache: Path) -> Path:
    """A random-weight tiny DeepSeek checkpoint (``deepseek-runtime make-tiny``), cached.

    Its context is the operator's default ``maxModelLen`` so the pods' ``DSR_MAX_MODEL_LEN``
    applies unchanged."""
    out = cache / "live-tiny-v2-32k"
    if not (out / "config.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f"live-tiny.{uuid.uuid4().hex[:6]}"
        runtime = Path(sys.executable).parent / "deepseek-runtime"
        subprocess.run(
            [
                *(str(runtime), "make-tiny", "--arch", "v2", "--out", str(tmp), "--seed", "11"),
                *("--set", f"max_position_embeddings={MAX_MODEL_LEN}"),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        if not (out / "config.json").is_file():
            tmp.rename(out)
    return out


class LiveDataPlane:
    """See the module docstring."""

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        checkpoint: Path,
        *,
        nodes: int = 2,
        gpus_per_node: int = 4,
        scrape_interval: str = "1s",
        poll: float = 0.5,
        kubectl: Callable[..., Any] | None = None,
    ) -> None:
        self.kubeconfig, self.workdir, self.poll = kubeconfig, workdir, poll
        self.creds = ApiCredentials.from_kubeconfig(kubeconfig)
        self.api = ApiReader(self.creds)
        self.pool = uuid.uuid4().hex[:6]
        self.placement = placement(self.pool)
        self.node_count, self.gpus_per_node = nodes, gpus_per_node
        self.fleet = Fleet(checkpoint, workdir / "runtimes")
        self.prometheus = LivePrometheus(PROMETHEUS_BIN, workdir / "prometheus", scrape_interval)
        self._kubectl = kubectl
        self._namespaces: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._kubectl is None:
            binary = toolchain().path("kubectl")
            self._kubectl = lambda *a, **kw: kubectl(binary, self.kubeconfig, *a, **kw)
        return self._kubectl

    def _create_nodes(self) -> None:
        used = {
            str(n["spec"].get("podCIDR"))
            for n in self.api.items("/api/v1/nodes")
            if n["spec"].get("podCIDR")
        }
        start = int(self.pool[:2], 16) % 254 + 1  # spread concurrent sessions apart
        subnets = free_subnets(used, self.node_count, start)
        items = [live_node(self.pool, i, s, self.gpus_per_node) for i, s in enumerate(subnets)]
        doc = {"apiVersion": "v1", "kind": "List", "items": items}
        self._client()("create", "-f", "-", stdin=json.dumps(doc))

    def _delete_nodes(self) -> None:
        self._client()(
            "delete", "nodes", "-l", f"{LIVE_POOL_LABEL}={self.pool}", "--wait=false", check=False
        )

    def __enter__(self) -> LiveDataPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._create_nodes()
        try:
            self.prometheus.start()
            self._thread = threading.Thread(target=self._loop, name="live-data-plane", daemon=True)
            self._thread.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.fleet.stop_all()
        self.prometheus.stop()
        self._delete_nodes()
        self.api.close()

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                namespaces = sorted(self._namespaces)
            try:
                found: dict[str, list[dict[str, Any]]] = {k: [] for k in _COLLECTIONS}
                for ns in namespaces:
                    for kind, template in _COLLECTIONS.items():
                        found[kind] += self.api.items(template.format(ns=ns))
                with self._lock:
                    self.fleet.sync(found["pods"])
                self.prometheus.sync(
                    found["servicemonitors"], found["services"], found["slices"], found["pods"]
                )
            except Exception as exc:  # keep the data plane up through API hiccups
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                log.warning("live data plane loop: %s", exc)
            self._stop.wait(self.poll)

    # -- test API --------------------------------------------------------------------------
    def watch(self, namespace: str) -> None:
        with self._lock:
            self._namespaces.add(namespace)

    def unwatch(self, namespace: str) -> None:
        with self._lock:
            self._namespaces.discard(namespace)

    def runtimes(self, namespace: str) -> list[Runtime]:
        with self._lock:
            return [r for r in self.fleet.runtimes.values() if r.namespace == namespace]

    @property
    def ready_log(self) -> list[tuple[str, float, float]]:
        with self._lock:
            return list(self.fleet.ready_log)

    def wait_runtimes(
        self, namespace: str, count: int, timeout: float = 120, track: str | None = None
    ) -> list[Runtime]:
        """Wait until exactly ``count`` runtimes of ``namespace`` (``track``) are ready."""
        deadline = time.monotonic() + timeout
        while True:
            ready = [
                r
                for r in self.runtimes(namespace)
                if r.ready_at is not None and (track is None or r.track == track)
            ]
            if len(ready) == count:
                return ready
            dead = [r.pod for r in self.runtimes(namespace) if not r.alive()]
            if dead:
                raise AssertionError(f"runtimes exited: {dead}; logs in {self.fleet.log_dir}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(ready)} ready runtimes in {namespace} after {timeout:.0f}s, "
                    f"want {count}; loop errors: {self.errors[-3:]}"
                )
            time.sleep(0.5)

    def wait_value(
        self, promql: str, predicate: Callable[[float], bool], timeout: float = 60
    ) -> float:
        """Poll ``promql`` until it has one value that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = self.prometheus.value(promql)
                if last is not None and predicate(last):
                    return float(last)
            except Exception as exc:  # keep polling
                last = exc
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql!r}: last {last!r} after {timeout:.0f}s")
            time.sleep(1.0)

    def load(
        self,
        namespace: str,
        service: str,
        model: str,
        *,
        duration: float = 300.0,
        **options: Any,
    ) -> Load:
        """Start a bounded :class:`~e2e.live.load.Load` against ``service``."""
        return Load(ApiReader(self.creds), namespace, service, model, **options).start(duration)
