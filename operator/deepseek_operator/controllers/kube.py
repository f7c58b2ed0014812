"""A small synchronous Kubernetes client for the controller (all API I/O lives here).

Called by :mod:`.reconcile` and :mod:`.handlers`.  It speaks raw REST through the
official ``kubernetes`` client's transport (auth, TLS, kubeconfig), resolves kinds
to resources by lazy per-group-version discovery, applies objects with
server-side apply under one field manager, and counts every write it sends so
tests and the benchmark can prove that a no-op resync writes nothing.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import structlog
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "deepseek-operator"
log = structlog.get_logger("deepseek_operator.kube")


class KubeError(RuntimeError):
    """An API call failed; ``status`` is the HTTP status (0 when unknown)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class Kube:
    """Thread-safe thin REST client; one instance per operator process."""

    def __init__(self, api_client: k8s.ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        self._api = api_client
        self.field_manager = field_manager
        self._resources: dict[tuple[str, str], ResourceInfo | None] = {}
        self._discovered: set[str] = set()
        self._lock = threading.Lock()
        self.writes: Counter[str] = Counter()

    @classmethod
    def from_config(cls, kubeconfig: str | None = None) -> Kube:
        """Build from a kubeconfig path, else in-cluster config, else ~/.kube/config."""
        configuration = k8s.Configuration()
        if kubeconfig:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        else:
            try:
                k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            except k8s_config.ConfigException:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
        api = k8s.ApiClient(configuration)
        api.user_agent = f"{FIELD_MANAGER}/0.1"
        return cls(api)

    # -- transport -----------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """Send one request; return the decoded JSON body, or None on 404."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        req = self._api.param_serialize(
            method,
            path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            resp = self._api.call_api(*req, _request_timeout=30)
            resp.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(f"{method} {path}: {exc.status} {_reason(exc)}", exc.status) from exc
        if resp.status == 404:
            return None
        if not 200 <= resp.status <= 299:
            raise KubeError(f"{method} {path}: {resp.status} {resp.data!r:.300}", resp.status)
        if method != "GET":
            self.writes[method] += 1
        data: dict[str, Any] = json.loads(resp.data or b"{}")
        return data

    # -- discovery ------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> ResourceInfo | None:
        """The resource serving ``kind`` in ``api_version``, or None if not served."""
        key = (api_version, kind)
        with self._lock:
            if key in self._resources or api_version in self._discovered:
                return self._resources.get(key)
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        listing = self.request("GET", path) or {}
        found: dict[tuple[str, str], ResourceInfo | None] = {}
        for res in listing.get("resources", []):
            if "/" in res.get("name", ""):
                continue
            info = ResourceInfo(api_version, res["kind"], res["name"], bool(res["namespaced"]))
            found[(api_version, res["kind"])] = info
        with self._lock:
            self._resources.update(found)
            self._discovered.add(api_version)
            return self._resources.get(key)

    def _info(self, api_version: str, kind: str) -> ResourceInfo:
        info = self.resource(api_version, kind)
        if info is None:
            raise KubeError(f"{kind} in {api_version} is not served by this cluster", 404)
        return info

    # -- verbs --------------------------------------------------------------------
    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        return self.request("GET", self._info(api_version, kind).path(namespace, name))

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        body = self.request("GET", self._info(api_version, kind).path(namespace), query=query)
        items: list[dict[str, Any]] = (body or {}).get("items", [])
        for item in items:  # list items omit apiVersion/kind
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply ``obj`` under :attr:`field_manager`; return the live object."""
        meta = obj["metadata"]
        info = self._info(obj["apiVersion"], obj["kind"])
        query = [("fieldManager", self.field_manager), ("force", "true" if force else "false")]
        live = self.request(
            "PATCH",
            info.path(meta.get("namespace"), meta["name"]),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
        )
        log.info(
            "api_write",
            verb="apply",
            kind=obj["kind"],
            name=meta["name"],
            namespace=meta.get("namespace"),
        )
        return live or {}

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete with background propagation; False when it was already gone."""
        info = self._info(api_version, kind)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        gone = self.request("DELETE", info.path(namespace, name), body=body) is None
        log.info("api_write", verb="delete", kind=kind, name=name, namespace=namespace)
        return not gone

    def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        status: dict[str, Any],
        resource_version: str | None,
    ) -> dict[str, Any]:
        """Merge-patch ``status`` on the status subresource, guarded by resourceVersion."""
        info = self._info(api_version, kind)
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        live = self.request(
            "PATCH",
            info.path(namespace, name) + "/status",
            query=[("fieldManager", self.field_manager)],
            body=body,
            content_type="application/merge-patch+json",
        )
        log.info(
            "api_write",
            verb="patch-status",
            kind=kind,
            name=name,
            namespace=namespace,
            keys=sorted(status),
        )
        return live or {}


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.reason))
    except (ValueError, AttributeError):
        return str(exc.reason)
