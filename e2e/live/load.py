"""A bounded load generator on loopback: Service -> EndpointSlices -> pod IP -> runtime.

Each worker thread sends ``/v1/completions`` requests, one at a time, to the ready endpoints
of one Service, round robin. Endpoints are re-read from the apiserver's EndpointSlices
(``kubernetes.io/service-name``) every second, so replicas that the autoscaler adds get
traffic as soon as the endpoints controller lists them, as a kube-proxy would route it.
Bounded: a fixed number of workers, a per-request timeout, and :meth:`Load.stop` (or the
``duration`` given to :meth:`Load.start`) ends every loop.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from e2e.live.api import ApiReader
from e2e.live.network import loopback_address


def ready_endpoints(slices: list[dict[str, Any]], port_name: str = "http") -> list[str]:
    """``host:port`` loopback URLs of the ready endpoints in a Service's EndpointSlices."""
    out: list[str] = []
    for s in slices:
        port = next((p["port"] for p in s.get("ports") or [] if p.get("name") == port_name), None)
        if port is None:
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for address in ep.get("addresses") or []:
                out.append(f"{loopback_address(address)}:{port}")
    return sorted(out)


@dataclass
class LoadStats:
    """What the workers saw (read while running or after stop)."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    by_endpoint: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


class Load:
    """``concurrency`` loopback clients of Service ``service`` in ``namespace``."""

    def __init__(
        self,
        api: ApiReader,
        namespace: str,
        service: str,
        model: str,
        *,
        concurrency: int = 4,
        max_tokens: int = 16,
        prompt: str = "The operator scales",
        timeout: float = 30.0,
    ) -> None:
        self.api, self.namespace, self.service, self.model = api, namespace, service, model
        self.concurrency, self.max_tokens, self.prompt = concurrency, max_tokens, prompt
        self.timeout = timeout
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._endpoints: list[str] = []
        self._threads: list[threading.Thread] = []
        self._deadline = float("inf")

    def endpoints(self) -> list[str]:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        with self._lock:  # ApiReader's client is shared with the resolver thread only
            slices = self.api.items(
                path, labelSelector=f"kubernetes.io/service-name={self.service}"
            )
        return ready_endpoints(slices)

    def _resolve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with contextlib.suppress(httpx.HTTPError):
                self._endpoints = self.endpoints()
            self._stop.wait(1.0)

    def _work(self, offset: int) -> None:
        body = {"model": self.model, "prompt": self.prompt, "max_tokens": self.max_tokens}
        counter = itertools.count(offset)
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                endpoints = self._endpoints
                if not endpoints:
                    self._stop.wait(0.2)
                    continue
                target = endpoints[next(counter) % len(endpoints)]
                t0 = time.monotonic()
                try:
                    code = str(
                        client.post(f"http://{target}/v1/completions", json=body).status_code
                    )
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                    self._stop.wait(0.2)  # a refused connection must not spin
                elapsed = time.monotonic() - t0
                with self._lock:
                    self.stats.statuses[code] += 1
                    self.stats.latencies.append(elapsed)
                    self.stats.by_endpoint[target] += 1

    def start(self, duration: float = 300.0) -> Load:
        """Start the workers; they stop by themselves after ``duration`` seconds."""
        self._deadline = time.monotonic() + duration
        self._endpoints = self.endpoints()
        self._threads = [threading.Thread(target=self._resolve, daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, args=(i,), daemon=True)
            for i in range(self.concurrency)
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> LoadStats:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self.stats

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
