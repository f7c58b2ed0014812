"""``deepseek-operator``: print the CRD, plan or render a DeepSeekDeployment, run the operator.

::

    deepseek-operator crd [-o yaml|json]
    deepseek-operator plan -f DSD.yaml [--nodes NODES.yaml] [--model-config config.json]
                           [-n NAMESPACE] [-o text|json|yaml]
    deepseek-operator render -f DSD.yaml [--nodes NODES.yaml] [--model-config config.json]
                             [-n NAMESPACE]
    deepseek-operator api-docs
    deepseek-operator run [kopf options]        (see deepseek-operator run --help)

``NODES.yaml`` is what ``kubectl get nodes -o yaml`` prints. Without ``--nodes`` the
built-in example inventory is used (:mod:`deepseek_operator.planning.examples`: 4 nodes
each of 8×H100-80GB, 8×H200, 8×A100-80GB and 4×L40S, like the local control plane).

Exit status: 0 success, 1 the spec cannot be planned on these nodes, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from deepseek_operator.api.resource import DeepSeekDeployment
from deepseek_operator.apidocs import api_markdown
from deepseek_operator.cli_inputs import InputError, load_config, load_deployments, load_nodes
from deepseek_operator.crd import build_crd, crd_yaml
from deepseek_operator.planning import (
    GpuInventory,
    Plan,
    PlanningError,
    inventory_from_nodes,
    plan_deployment,
)
from deepseek_operator.planning.examples import example_nodes
from deepseek_operator.planning.memory import human_bytes
from deepseek_operator.render import render_children


def _package_version() -> str:
    """The installed distribution's version (what the images are tagged with)."""
    try:
        return importlib.metadata.version("deepseek-k8s")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="deepseek-operator", description="DeepSeekDeployment operator and tools."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    crd = sub.add_parser("crd", help="print the CustomResourceDefinition")
    crd.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    for name, text in (
        ("plan", "print the sharding plan and its reasons"),
        ("render", "print every child object as multi-document YAML"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "-f", "--filename", required=True, type=Path, help="DeepSeekDeployment YAML"
        )
        cmd.add_argument(
            "--nodes",
            type=Path,
            help="`kubectl get nodes -o yaml` output; default: example inventory",
        )
        cmd.add_argument(
            "--model-config",
            type=Path,
            help="the checkpoint's config.json, for models outside the catalog",
        )
        cmd.add_argument(
            "-n", "--namespace", help="namespace of DSDs that set none (default: default)"
        )
        if name == "plan":
            cmd.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    sub.add_parser("api-docs", help="print the API reference (docs/api.md)")
    sub.add_parser("run", help="run the operator (kopf); see `run --help`", add_help=False)
    return p


def _inventory(args: argparse.Namespace) -> GpuInventory:
    nodes = load_nodes(args.nodes) if args.nodes else example_nodes()
    return inventory_from_nodes(nodes)


def _plan_text(dsd: DeepSeekDeployment, plan: Plan) -> str:
    lines = [
        f"DeepSeekDeployment {dsd.namespace}/{dsd.name}: {plan.model_name}",
        f"  GPU:      {plan.gpu_summary} ({plan.gpu_product}, "
        f"{plan.gpu_memory_mib / 1024:.0f} GiB each)",
        f"  Layout:   TP{plan.tensor} × PP{plan.pipeline} × EP{plan.expert} (DP{plan.data}): "
        f"{plan.gpus_per_replica} GPU(s) on {plan.nodes_per_replica} node(s) per replica",
        f"  Weights:  {plan.quantization}, {human_bytes(plan.checkpoint_bytes)} in all, "
        f"{human_bytes(plan.weight_bytes_per_gpu)} per GPU",
        f"  KV cache: {plan.kv_cache_dtype}, {human_bytes(plan.kv_cache_bytes_per_gpu)} per GPU, "
        f"{plan.max_tokens_in_cache} tokens per replica",
        "  Reasons:",
        *(f"    - {r}" for r in plan.reasons),
    ]
    return "\n".join(lines)


def _load(args: argparse.Namespace) -> list[DeepSeekDeployment]:
    dsds = load_deployments(args.filename)
    for dsd in dsds:
        if args.namespace and "namespace" not in dsd.metadata.model_fields_set:
            dsd.metadata.namespace = args.namespace
    return dsds


def _cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    dsds = _load(args)
    inventory = _inventory(args)
    config = load_config(args.model_config) if args.model_config else None
    results: list[dict[str, Any]] = []
    texts: list[str] = []
    for dsd in dsds:
        plan = plan_or_raise(dsd, inventory, config)
        results.append(
            {"name": dsd.name, "namespace": dsd.namespace, "plan": plan.model_dump(by_alias=True)}
        )
        texts.append(_plan_text(dsd, plan))
    if args.output == "json":
        out.write(json.dumps(results[0] if len(results) == 1 else results, indent=2) + "\n")
    elif args.output == "yaml":
        out.write(yaml.safe_dump_all(results, sort_keys=False, allow_unicode=True))
    else:
        out.write("\n\n".join(texts) + "\n")
    return 0


def plan_or_raise(
    dsd: DeepSeekDeployment, inventory: GpuInventory, config: dict[str, Any] | None
) -> Plan:
    """Plan one DSD; a PlanningError gets the DSD's name prefixed."""
    try:
        return plan_deployment(dsd.spec, inventory, config)
    except PlanningError as err:
        raise PlanningError(
            f"{dsd.namespace}/{dsd.name}: {err.message}", err.reasons, err.field
        ) from None


def _cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    dsds = _load(args)
    inventory = _inventory(args)
    config = load_config(args.model_config) if args.model_config else None
    objects: list[dict[str, Any]] = []
    for dsd in dsds:
        # a manifest that carries status (``kubectl get -o yaml``) renders its canary state
        canary = dsd.status.canary if dsd.status is not None else None
        children = render_children(dsd, plan_or_raise(dsd, inventory, config), canary)
        if not dsd.metadata.uid:  # a preview: no owner to reference yet
            for child in children:
                child["metadata"].pop("ownerReferences", None)
        objects += children
    out.write(yaml.safe_dump_all(objects, sort_keys=False, allow_unicode=True, width=100))
    return 0


def _cmd_run(argv: list[str]) -> int:
    try:
        controllers = importlib.import_module("deepseek_operator.controllers")
    except ImportError as err:
        print(
            f"deepseek-operator run: the controller is not available ({err}); install the "
            "package with its kopf and kubernetes dependencies",
            file=sys.stderr,
        )
        return 2
    run = getattr(controllers, "run", None)
    if run is None:
        print("deepseek-operator run: deepseek_operator.controllers has no run()", file=sys.stderr)
        return 2
    return int(run(argv))


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``deepseek-operator`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if argv[:1] == ["run"]:
        return _cmd_run(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "crd":
            if args.output == "json":
                out.write(json.dumps(build_crd(), indent=2) + "\n")
            else:
                out.write(crd_yaml())
            return 0
        if args.command == "api-docs":
            out.write(api_markdown())
            return 0
        if args.command == "plan":
            return _cmd_plan(args, out)
        return _cmd_render(args, out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PlanningError as err:
        print(f"cannot plan: {err.message}", file=sys.stderr)
        if err.reasons:
            print("reasons so far:\n" + "\n".join(f"  - {r}" for r in err.reasons), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
