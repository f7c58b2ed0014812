"""Schemathesis fuzzes every operation of the server's OpenAPI schema: no input gives a 5xx.

Schemathesis' pytest plugin does not load under this pytest, so its CLI (same engine)
runs against the live server with the ``not_a_server_error`` check, a bounded number of
examples per operation and a fixed seed. The schema is fetched from the server and the
model name (body ``model`` and path ``{name}``) pinned to the served one, so the fuzzer
reaches generation instead of stopping at "unknown model" (which the openai-client tests
cover).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_harness import ServerProcess

pytestmark = [pytest.mark.slow]


def pin_model_name(schema: dict[str, Any], name: str) -> dict[str, Any]:
    for component in schema.get("components", {}).get("schemas", {}).values():
        if "model" in component.get("properties", {}):
            component["properties"]["model"] = {"type": "string", "enum": [name]}
    for ops in schema["paths"].values():
        for op in ops.values():
            for param in op.get("parameters", []):
                if param.get("in") == "path" and param.get("name") == "name":
                    param["schema"] = {"type": "string", "enum": [name]}
    return schema


def test_no_server_errors(tiny_model: Path, tmp_path: Path) -> None:
    # a short context keeps every generated request cheap on CPU
    proc = ServerProcess(tiny_model, args=["--max-model-len", "64", "--max-n", "4"])
    proc.start(tmp_path)
    try:
        schema = pin_model_name(httpx.get(proc.url + "/openapi.json").json(), "tiny-v3")
        (tmp_path / "openapi.json").write_text(json.dumps(schema))
        cli = Path(sys.executable).with_name("schemathesis")
        result = subprocess.run(
            [
                str(cli),
                "run",
                str(tmp_path / "openapi.json"),
                "--url",
                proc.url,
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "50",
                "--seed",
                "1",
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
            timeout=900,
            cwd=tmp_path,
            check=False,
        )
        output = result.stdout + result.stderr
        print(output[-3000:])
        assert result.returncode == 0, output[-6000:]
        assert " passed" in output and "failed" not in output.split("Seed:")[0].lower()
        assert proc.proc is not None and proc.proc.poll() is None, "the server crashed"
    finally:
        assert proc.stop() == 0
