"""A small read client for the apiserver, straight over HTTPS with the kubeconfig's certs.

The live data plane polls pods, EndpointSlices and ServiceMonitors every half second;
a kubectl subprocess per poll would cost more CPU than the runtimes it feeds on a 2-core CI
machine, so the harness reads the API with one kept-alive ``httpx`` connection instead.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml


@dataclass(frozen=True)
class ApiCredentials:
    """Where the apiserver is and the files that authenticate to it (kwokctl writes paths)."""

    server: str
    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path) -> ApiCredentials:
        doc = yaml.safe_load(kubeconfig.read_text())
        ctx_name = doc["current-context"]
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        for key in ("certificate-authority", "client-certificate", "client-key"):
            if key not in {**cluster, **user}:
                raise ValueError(f"{kubeconfig}: expected file paths, no {key!r} (inline data?)")
        return cls(
            server=str(cluster["server"]),
            ca_file=Path(cluster["certificate-authority"]),
            cert_file=Path(user["client-certificate"]),
            key_file=Path(user["client-key"]),
        )


class ApiReader:
    """GETs against the apiserver; ``items(path)`` lists a collection."""

    def __init__(self, creds: ApiCredentials, timeout: float = 10.0) -> None:
        self.creds = creds
        context = ssl.create_default_context(cafile=str(creds.ca_file))
        context.load_cert_chain(str(creds.cert_file), str(creds.key_file))
        self._client = httpx.Client(base_url=creds.server, verify=context, timeout=timeout)

    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = self._client.get(path, params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def items(self, path: str, **params: str) -> list[dict[str, Any]]:
        return list(self.get(path, **params).get("items") or [])

    def close(self) -> None:
        self._client.close()
