"""The real LeaderWorkerSet controller for the local control plane (built from its Go module).

kwokctl runs no LWS controller, so a LeaderWorkerSet would never get pods or a status.
This module builds ``sigs.k8s.io/lws/cmd`` at the version pinned in
``e2e/toolchain/versions.env`` (``LWS_VERSION``; wrapper module in ``e2e/lws/``, binary
cached under ``$DSK_CACHE/bin/lws-controller-<version>/``) and runs it on loopback:

- its admission webhooks (LWS defaulting/validation; the pod webhook that labels group
  and worker indices, which the controller needs) are served over TLS on 127.0.0.1 with
  a throw-away CA made by ``openssl``, and registered with ``clientConfig.url`` while the
  controller runs (removed on stop). The pod webhooks only see LWS pods
  (``objectSelector``), so other tests are unaffected;
- leader election (a Lease in ``lws-system``) keeps concurrent sessions from running two
  active controllers.

Used by the operator e2e tests, the demo and the benchmark via :func:`lws_controller`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2e.devcluster.kube import kubectl
from e2e.devcluster.toolchain import cache_dir, read_versions

MODULE_DIR = Path(__file__).resolve().parent / "lws"
WEBHOOKS = {
    # path, resource, operations, pods only
    "mleaderworkerset": (
        "/mutate-leaderworkerset-x-k8s-io-v1-leaderworkerset",
        "leaderworkersets",
        ["CREATE", "UPDATE"],
    ),
    "mpod": ("/mutate--v1-pod", "pods", ["CREATE"]),
    "vleaderworkerset": (
        "/validate-leaderworkerset-x-k8s-io-v1-leaderworkerset",
        "leaderworkersets",
        ["CREATE", "UPDATE"],
    ),
    "vpod": ("/validate--v1-pod", "pods", ["CREATE", "UPDATE"]),
}


class LwsUnavailableError(RuntimeError):
    """The controller cannot be built or started here (no Go toolchain, no openssl...)."""


def version() -> str:
    return read_versions()["LWS_VERSION"]


def binary_path() -> Path:
    return cache_dir() / "bin" / f"lws-controller-{version()}" / "lws-controller"


def ensure_built() -> Path:
    """Build the controller once (minutes); later calls return the cached binary."""
    out = binary_path()
    if (out.parent / ".complete").is_file() and out.is_file():
        return out
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None
    )
    if go is None:
        raise LwsUnavailableError("go is not on PATH: cannot build the LeaderWorkerSet controller")
    tmp = out.parent.with_name(out.parent.name + f".tmp.{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOFLAGS=os.environ.get("DSK_GOFLAGS", "-p=2") + " -trimpath -buildvcs=false",
    )
    print(f"[lws] building sigs.k8s.io/lws/cmd {version()} (first run: minutes)", flush=True)
    proc = subprocess.run(
        [
            go,
            "build",
            "-ldflags",
            "-s -w",
            "-o",
            str(tmp / "lws-controller"),
            "sigs.k8s.io/lws/cmd",
        ],
        cwd=MODULE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise LwsUnavailableError(f"building the LWS controller failed: {proc.stderr[-2000:]}")
    shutil.rmtree(out.parent, ignore_errors=True)
    tmp.rename(out.parent)
    (out.parent / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_certs(workdir: Path) -> bytes:
    """A CA and a server certificate for 127.0.0.1; returns the CA PEM."""
    if shutil.which("openssl") is None:
        raise LwsUnavailableError("openssl is not installed: cannot serve the LWS webhooks")
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=e2e-lws-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
    )
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "tls.crt",
    )
    return (certs / "ca.crt").read_bytes()


def _webhook_configs(name: str, port: int, ca: bytes) -> list[dict[str, Any]]:
    bundle = base64.b64encode(ca).decode()
    mutating: list[dict[str, Any]] = []
    validating: list[dict[str, Any]] = []
    for hook, (path, resource, operations) in WEBHOOKS.items():
        entry: dict[str, Any] = {
            "name": f"{hook}.{name}.e2e.deepseek.ai",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "clientConfig": {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle},
            "rules": [
                {
                    "apiGroups": [""] if resource == "pods" else ["leaderworkerset.x-k8s.io"],
                    "apiVersions": ["v1"],
                    "operations": operations,
                    "resources": [resource],
                }
            ],
        }
        if resource == "pods":
            entry["objectSelector"] = {
                "matchExpressions": [
                    {"key": "leaderworkerset.sigs.k8s.io/name", "operator": "Exists"}
                ]
            }
        (mutating if hook.startswith("m") else validating).append(entry)
    meta = {"name": name, "labels": {"deepseek.ai/e2e": "lws-controller"}}
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": meta,
            "webhooks": mutating,
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": meta,
            "webhooks": validating,
        },
    ]


def _wait_tls(port: int, timeout: float = 60) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                ctx.wrap_socket(raw),
            ):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise LwsUnavailableError(
                    f"LWS webhook server on :{port} did not come up"
                ) from None
            time.sleep(0.5)


@contextmanager
def lws_controller(kubectl_bin: Path, kubeconfig: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the LWS controller (and its webhooks) against the cluster while in the block."""
    binary = ensure_built()
    workdir = Path(tempfile.mkdtemp(prefix="lws-controller-"))
    ca = _make_certs(workdir)
    port, health = _free_port(), _free_port()
    (workdir / "config.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "config.lws.x-k8s.io/v1alpha1",
                "kind": "Configuration",
                "internalCertManagement": {"enable": False},
                "leaderElection": {
                    "leaderElect": True,
                    "resourceNamespace": "kube-system",
                    "resourceName": "e2e-lws-controller",
                },
                "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
                "metrics": {"bindAddress": "0"},
                "webhook": {"port": port, "host": "127.0.0.1", "certDir": str(workdir / "certs")},
            }
        )
    )
    # out of a pod the controller keeps its leader-election Lease in "lws-system"
    kubectl(kubectl_bin, kubeconfig, "create", "namespace", "lws-system", check=False)
    log = open(workdir / "lws-controller.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(binary), "--config", str(workdir / "config.yaml"), "--zap-log-level=info"],
        env=dict(os.environ, KUBECONFIG=str(kubeconfig)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    name = f"e2e-lws-{uuid.uuid4().hex[:8]}"
    configs = _webhook_configs(name, port, ca)
    try:
        _wait_tls(port)
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": configs})
        kubectl(kubectl_bin, kubeconfig, "apply", "-f", "-", stdin=doc)
        print(
            f"[lws] controller {version()} running (pid {proc.pid}, webhooks :{port}, "
            f"log {workdir / 'lws-controller.log'})",
            flush=True,
        )
        yield proc
    finally:
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            kubectl(
                kubectl_bin, kubeconfig, "delete", kind, name, "--ignore-not-found", check=False
            )
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


if __name__ == "__main__":  # `python -m e2e.lws_controller` builds (or finds) the binary
    print(ensure_built())
