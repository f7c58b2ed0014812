"""KEDA's operator and metrics API server, built from the pinned module, run on loopback.

``e2e/toolchain/build.sh keda`` builds ``keda-operator`` and ``keda-adapter`` from
``github.com/kedacore/keda/v2`` (``KEDA_VERSION`` in versions.env, which also pins the
KEDA CRDs) into the tool cache; :func:`keda_binaries` finds (or builds) them.
:class:`Keda` runs both against the local control plane the way KEDA's manifests wire
them, with three local substitutions:

- TLS: a throwaway CA and one serving/client certificate (``localhost``, 127.0.0.1) in
  ``ca.crt``/``tls.crt``/``tls.key``, the layout KEDA's cert rotation writes, so the
  operator's gRPC metrics service and the adapter authenticate each other with mTLS.
- Aggregation: the ``v1beta1.external.metrics.k8s.io`` APIService points at a Service of
  type ``ExternalName: localhost`` (the aggregator dials ExternalName services directly;
  there is no kube-proxy for a ClusterIP). kwokctl's apiserver sends the request with its
  proxy client certificate (signed by the cluster CA); the adapter authenticates it through
  the ``extension-apiserver-authentication`` ConfigMap and authorizes with a
  SubjectAccessReview, both against the real apiserver.
- One KEDA per cluster: the APIService is cluster-scoped, so :class:`Keda` takes a file
  lock in the cache; a second session waits for it.

The real kube-controller-manager's HPA controller then reads ``external.metrics.k8s.io``
through the aggregator and scales the Deployment.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from e2e.devcluster.crds import module_dir
from e2e.devcluster.toolchain import BUILD_SCRIPT, cache_dir, read_versions

APISERVICE = "v1beta1.external.metrics.k8s.io"
KEDA_NAMESPACE = "keda"


def keda_binaries(build: bool = True) -> tuple[Path, Path]:
    """(operator, adapter) paths; runs ``build.sh keda`` first when they are missing."""
    version = read_versions()["KEDA_VERSION"]
    root = cache_dir() / "bin" / f"keda-{version}"
    operator, adapter = root / "keda-operator", root / "keda-adapter"
    if build and not (operator.is_file() and adapter.is_file()):
        subprocess.run(["bash", str(BUILD_SCRIPT), "keda"], check=True, timeout=3600)
    if not (operator.is_file() and adapter.is_file()):
        raise FileNotFoundError(f"KEDA binaries missing in {root}: run e2e/toolchain/build.sh keda")
    return operator, adapter


def write_certs(cert_dir: Path) -> None:
    """A CA and a localhost certificate for both sides of KEDA's gRPC metrics service."""
    cert_dir.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=cert_dir, check=True, capture_output=True)

    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=KEDA"),
        *("-keyout", "ca.key", "-out", "ca.crt"),
    )
    (cert_dir / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,DNS:keda-operator,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"),
        *("-keyout", "tls.key", "-out", "tls.csr"),
    )
    openssl(
        *("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "tls.crt"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aggregation_objects(port: int) -> list[dict[str, Any]]:
    """The Service and APIService that route external.metrics.k8s.io to the adapter."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "keda-metrics-apiserver", "namespace": KEDA_NAMESPACE},
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "insecureSkipTLSVerify": True,
                "service": {
                    "name": "keda-metrics-apiserver",
                    "namespace": KEDA_NAMESPACE,
                    "port": port,
                },
            },
        },
    ]


class Keda:
    """KEDA operator + metrics adapter processes (context manager)."""

    def __init__(self, kubeconfig: Path, workdir: Path, kubectl: Callable[..., Any]) -> None:
        self.kubeconfig, self.workdir, self.kubectl = kubeconfig, workdir, kubectl
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._lock: IO[str] | None = None
        self.adapter_port = _free_port()
        self.grpc_port = _free_port()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self._logs.append(log)
        self.procs.append(
            subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        )

    def __enter__(self) -> Keda:
        operator, adapter = keda_binaries()
        lock_path = cache_dir() / "keda.lock"
        self._lock = lock_path.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._start(operator, adapter)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, operator: Path, adapter: Path) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = self.workdir / "certs"
        write_certs(certs)
        self.kubectl("create", "namespace", KEDA_NAMESPACE, check=False)
        # The cluster may still hold an older KEDA's CRDs (devcluster installs only missing
        # ones): serve the operator the schema of its own version.
        root = module_dir("github.com/kedacore/keda/v2", read_versions()["KEDA_VERSION"])
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=devcluster"]
        for crd in sorted((root / "config/crd/bases").glob("keda.sh_*.yaml")):
            args += ["-f", str(crd)]
        self.kubectl(*args, timeout=120)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "KUBECONFIG": str(self.kubeconfig),
            "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": KEDA_NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
            "OPERATOR_NAME": "keda-operator",
            "KEDA_HTTP_DEFAULT_TIMEOUT": "3000",
        }
        self._spawn(
            "keda-operator",
            [
                str(operator),
                "--leader-elect=false",
                f"--cert-dir={certs}",
                f"--metrics-service-bind-address=127.0.0.1:{self.grpc_port}",
                "--metrics-bind-address=127.0.0.1:0",
                "--health-probe-bind-address=127.0.0.1:0",
                "--enable-cert-rotation=false",
                "--zap-log-level=info",
            ],
            env,
        )
        self._spawn(
            "keda-adapter",
            [
                str(adapter),
                f"--secure-port={self.adapter_port}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--metrics-service-address=127.0.0.1:{self.grpc_port}",
                "--metrics-service-grpc-authority=localhost",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--lister-kubeconfig={self.kubeconfig}",
                f"--kubeconfig={self.kubeconfig}",
                f"--port={_free_port()}",  # the adapter's own /metrics
                "--v=0",
            ],
            env,
        )
        doc = {"apiVersion": "v1", "kind": "List", "items": aggregation_objects(self.adapter_port)}
        self.kubectl("apply", "-f", "-", stdin=json.dumps(doc))
        self.wait_available()

    def wait_available(self, timeout: float = 120) -> None:
        """Wait until the aggregator reports the APIService Available."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(
                        f"a KEDA process exited {p.returncode}; logs in {self.workdir}"
                    )
            out = self.kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
            if out.returncode == 0:
                conds = json.loads(out.stdout).get("status", {}).get("conditions", [])
                ok = [c for c in conds if c["type"] == "Available"]
                last = json.dumps(ok)
                if ok and ok[0]["status"] == "True":
                    return
            time.sleep(1)
        raise RuntimeError(f"APIService {APISERVICE} not Available: {last}; logs in {self.workdir}")

    def close(self) -> None:
        self.kubectl("delete", "apiservice", APISERVICE, "--wait=false", check=False)
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for log in self._logs:
            log.close()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
