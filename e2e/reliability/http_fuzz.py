"""Schemathesis over every HTTP operation of a server with API keys on: no 5xx, auth enforced.

The server's own OpenAPI schema (``/openapi.json``: the OpenAI routes, ``/tokenize``,
KServe v2 and the probes) is fetched, the model name pinned to the served one (so
requests reach generation rather than stopping at "unknown model"), and a bearer
security scheme declared on every operation outside the probes. Schemathesis' CLI then
sends the bounded, seeded examples with a valid key and runs two checks:
``not_a_server_error`` (no 5xx) and ``ignored_auth`` (the same request without or with
a wrong key is refused, i.e. the key is enforced).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .server import RuntimeServer

PROBES = ("/health", "/ready", "/version", "/metrics", "/v2/health/")
OPEN = frozenset({"/v2", "/v2/models/{name}/ready"})
"""Open like the probes: KServe v2 server metadata and model readiness."""


def prepare_schema(schema: dict[str, Any], model: str) -> dict[str, Any]:
    """Pin ``model`` (body field and ``{name}`` path parameter); bearer auth on the API."""
    for component in schema.get("components", {}).get("schemas", {}).values():
        if "model" in component.get("properties", {}):
            component["properties"]["model"] = {"type": "string", "enum": [model]}
    schema.setdefault("components", {})["securitySchemes"] = {
        "key": {"type": "http", "scheme": "bearer"}
    }
    for path, ops in schema["paths"].items():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param.get("name") == "name":
                    param["schema"] = {"type": "string", "enum": [model]}
            if not path.startswith(PROBES) and path not in OPEN:
                op["security"] = [{"key": []}]
    return schema


@dataclass(frozen=True, slots=True)
class HttpFuzzReport:
    returncode: int
    operations: int
    passed: int
    failed: int
    server_alive: bool
    output_tail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "passed": self.passed,
            "failed": self.failed,
            "schemathesis_exit": self.returncode,
            "server_alive": self.server_alive,
        }


def _count(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def run_http_fuzz(
    server: RuntimeServer, key: str, workdir: Path, *, examples: int = 20, seed: int = 1
) -> HttpFuzzReport:
    schema = httpx.get(server.url + "/openapi.json", timeout=10).json()
    path = workdir / "openapi.json"
    path.write_text(json.dumps(prepare_schema(schema, server.model)))
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(cli),
            "run",
            str(path),
            "--url",
            server.url,
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error,ignored_auth",
            "--max-examples",
            str(examples),
            "--seed",
            str(seed),
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "60",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=workdir,
        check=False,
    )
    output = result.stdout + result.stderr
    summary = output.split("Seed:")[0]
    return HttpFuzzReport(
        returncode=result.returncode,
        operations=len([1 for ops in schema["paths"].values() for _ in ops]),
        passed=_count(r"(\d+) passed", summary),
        failed=_count(r"(\d+) failed", summary),
        server_alive=server.alive(),
        output_tail=output[-6000:],
    )
