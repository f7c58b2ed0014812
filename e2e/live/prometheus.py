"""A real Prometheus that scrapes the live runtimes the way prometheus-operator would.

Debian's ``/usr/bin/prometheus`` (the one CI installs) is built without the Kubernetes
service discovery (``kubernetes_sd_configs`` is an unknown field there), so discovery is
split in two:

- :func:`discover` does what ``kubernetes_sd`` role ``endpoints`` does: it reads Services,
  EndpointSlices and Pods from the real apiserver and emits one target per endpoint address
  with the same ``__meta_kubernetes_*`` labels, written to a ``file_sd`` file;
- :func:`scrape_configs` translates the ServiceMonitors the operator rendered into scrape
  jobs with the relabelling prometheus-operator generates: keep the Service by
  ``selector.matchLabels`` and the endpoint by port name, then set ``namespace``,
  ``service``, ``pod``, ``container``, ``endpoint``, ``job`` and one label per
  ``podTargetLabels`` entry (``deepseek.ai/track`` -> ``deepseek_ai_track``). Prometheus
  itself applies these rules. The only rule prometheus-operator would not add is
  :data:`e2e.live.network.ADDRESS_RELABEL`, the pod IP -> loopback "route".

:class:`LivePrometheus` runs the binary and reloads it (``/-/reload``) when the set of
ServiceMonitors changes; :meth:`LivePrometheus.query` and :meth:`LivePrometheus.value`
are the query helpers the tests use. The scrape interval can be shortened for tests.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from e2e.live.network import ADDRESS_RELABEL


def sanitize(label: str) -> str:
    """Prometheus label name of a Kubernetes label key (prometheus-operator's rule)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _meta(prefix: str, labels: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in labels.items():
        out[f"{prefix}_label_{sanitize(key)}"] = value
        out[f"{prefix}_labelpresent_{sanitize(key)}"] = "true"
    return out


def discover(
    services: list[dict[str, Any]],
    slices: list[dict[str, Any]],
    pods: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Target groups with the ``__meta_kubernetes_*`` labels of ``kubernetes_sd`` role
    ``endpoints``: one target per endpoint address and port of every Service."""
    by_pod = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
    by_svc = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
    groups: list[dict[str, Any]] = []
    for sl in slices:
        ns = sl["metadata"]["namespace"]
        svc = by_svc.get(
            (ns, sl["metadata"].get("labels", {}).get("kubernetes.io/service-name", ""))
        )
        if svc is None:
            continue
        base = {
            "__meta_kubernetes_namespace": ns,
            "__meta_kubernetes_service_name": svc["metadata"]["name"],
            **_meta("__meta_kubernetes_service", svc["metadata"].get("labels") or {}),
        }
        for port in sl.get("ports") or []:
            for ep in sl.get("endpoints") or []:
                ready = (ep.get("conditions") or {}).get("ready", True)
                labels = {
                    **base,
                    "__meta_kubernetes_endpoint_port_name": str(port.get("name", "")),
                    "__meta_kubernetes_endpoint_port_protocol": str(port.get("protocol", "TCP")),
                    "__meta_kubernetes_endpoint_ready": str(bool(ready)).lower(),
                }
                ref = ep.get("targetRef") or {}
                pod = by_pod.get((ns, ref.get("name", ""))) if ref.get("kind") == "Pod" else None
                if pod is not None:
                    labels |= {
                        "__meta_kubernetes_endpoint_address_target_kind": "Pod",
                        "__meta_kubernetes_endpoint_address_target_name": pod["metadata"]["name"],
                        "__meta_kubernetes_pod_name": pod["metadata"]["name"],
                        "__meta_kubernetes_pod_ip": pod["status"].get("podIP", ""),
                        "__meta_kubernetes_pod_node_name": pod["spec"].get("nodeName", ""),
                        **_meta("__meta_kubernetes_pod", pod["metadata"].get("labels") or {}),
                    }
                    for c in pod["spec"].get("containers", []):
                        if any(
                            cp.get("containerPort") == port.get("port") for cp in c.get("ports", [])
                        ):
                            labels["__meta_kubernetes_pod_container_name"] = c["name"]
                groups += [
                    {"targets": [f"{address}:{port['port']}"], "labels": labels}
                    for address in ep.get("addresses") or []
                ]
    return groups


def _endpoint_job(
    sm: dict[str, Any], index: int, endpoint: dict[str, Any], sd_file: Path, interval: str
) -> dict[str, Any]:
    meta, spec = sm["metadata"], sm["spec"]
    relabel: list[dict[str, Any]] = []
    for key, value in sorted((spec.get("selector") or {}).get("matchLabels", {}).items()):
        name = sanitize(key)
        relabel.append(
            {
                "source_labels": [
                    f"__meta_kubernetes_service_label_{name}",
                    f"__meta_kubernetes_service_labelpresent_{name}",
                ],
                "regex": f"({re.escape(value)});true",
                "action": "keep",
            }
        )
    relabel.append(
        {
            "source_labels": ["__meta_kubernetes_namespace"],
            "regex": re.escape(meta["namespace"]),
            "action": "keep",
        }
    )
    relabel.append(
        {
            "source_labels": ["__meta_kubernetes_endpoint_port_name"],
            "regex": re.escape(str(endpoint["port"])),
            "action": "keep",
        }
    )
    for source, target in (
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_service_name", "service"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_pod_container_name", "container"),
        ("__meta_kubernetes_service_name", "job"),
    ):
        relabel.append({"source_labels": [source], "target_label": target})
    for key in spec.get("podTargetLabels") or []:
        relabel.append(
            {
                "source_labels": [f"__meta_kubernetes_pod_label_{sanitize(key)}"],
                "regex": "(.+)",
                "target_label": sanitize(key),
                "replacement": "${1}",
            }
        )
    relabel.append({"target_label": "endpoint", "replacement": str(endpoint["port"])})
    relabel.append(dict(ADDRESS_RELABEL))
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "scrape_interval": interval or endpoint.get("interval", "30s"),
        "scrape_timeout": "1s" if interval else endpoint.get("scrapeTimeout", "10s"),
        "metrics_path": endpoint.get("path", "/metrics"),
        "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": "1s"}],
        "relabel_configs": relabel,
    }


def scrape_configs(
    service_monitors: list[dict[str, Any]], sd_file: Path, interval: str = ""
) -> list[dict[str, Any]]:
    """One scrape job per ServiceMonitor endpoint (``interval`` overrides theirs if set)."""
    jobs = []
    for sm in sorted(
        service_monitors, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])
    ):
        for i, ep in enumerate(sm["spec"].get("endpoints") or []):
            jobs.append(_endpoint_job(sm, i, ep, sd_file, interval))
    return jobs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LivePrometheus:
    """``/usr/bin/prometheus`` on a free loopback port with a reloadable config."""

    def __init__(self, binary: Path, workdir: Path, interval: str) -> None:
        self.binary, self.workdir, self.interval = binary, workdir, interval
        self.config = workdir / "prometheus.yml"
        self.sd_file = workdir / "targets.json"
        self._groups: list[dict[str, Any]] = []
        self.port = _free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._jobs: list[dict[str, Any]] = []
        self._http = httpx.Client(timeout=5.0)

    def _write(self) -> None:
        doc = {
            "global": {"scrape_interval": self.interval or "15s", "evaluation_interval": "1s"},
            "scrape_configs": self._jobs,
        }
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))

    def start(self, timeout: float = 60) -> LivePrometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sd_file.write_text("[]")
        self._write()
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=2h",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "prometheus.log").open("ab"),
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._http.get(f"{self.address}/-/ready").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start; see {self.workdir}/prometheus.log")
            time.sleep(0.3)

    def sync(
        self,
        service_monitors: list[dict[str, Any]],
        services: list[dict[str, Any]],
        slices: list[dict[str, Any]],
        pods: list[dict[str, Any]],
    ) -> None:
        """Rewrite the targets file and (when the ServiceMonitors changed) reload the config."""
        groups = discover(services, slices, pods)
        if groups != self._groups:
            tmp = self.sd_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(groups))
            tmp.replace(self.sd_file)  # atomic: file SD never reads half a file
            self._groups = groups
        jobs = scrape_configs(service_monitors, self.sd_file, self.interval)
        if jobs != self._jobs:
            self._jobs = jobs
            self._write()
            self._http.post(f"{self.address}/-/reload").raise_for_status()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query: the ``result`` vector (``[{metric, value}]``)."""
        response = self._http.get(f"{self.address}/api/v1/query", params={"query": promql})
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus error: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def value(self, promql: str) -> float | None:
        """The single value of an instant query (None when it returns no series)."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"{promql!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``)."""
        response = self._http.get(f"{self.address}/api/v1/targets", params={"state": "active"})
        response.raise_for_status()
        return list(response.json()["data"]["activeTargets"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._http.close()
