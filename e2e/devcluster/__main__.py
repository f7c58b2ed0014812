"""CLI of the local control plane: ``python -m e2e.devcluster up|down|status|nodes``.

Used by the Makefile (``make cluster-up``, ``cluster-down``, ``nodes``, ``demo``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from e2e.devcluster.cluster import cluster_info, down, ensure_cluster, is_healthy
from e2e.devcluster.kube import kubectl_json
from e2e.devcluster.report import format_table, summarize_nodes


def _nodes(name: str | None) -> int:
    info = cluster_info(name)
    if not is_healthy(info):
        print(f"cluster {info.name} is not running (python -m e2e.devcluster up)", file=sys.stderr)
        return 1
    nodes = kubectl_json(info.kubectl, info.kubeconfig, "get", "nodes")["items"]
    print(f"Nodes of cluster {info.name} grouped by GPU pool:")
    print(format_table(summarize_nodes(nodes)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.devcluster", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "nodes"])
    parser.add_argument("--pools", type=Path, default=None, help="pools file (e2e/pools.yaml)")
    parser.add_argument("--scale", type=int, default=1, help="multiply every pool's count")
    parser.add_argument("--name", default=None, help="cluster name (default deepseek-dev)")
    parser.add_argument("--recreate", action="store_true", help="up: delete and recreate")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be >= 1")
    if args.command == "up":
        info = ensure_cluster(args.pools, args.scale, args.name, recreate=args.recreate)
        print(f"export KUBECONFIG={info.kubeconfig}")
        return 0
    if args.command == "down":
        print("deleted" if down(args.name) else "nothing to delete")
        return 0
    if args.command == "status":
        info = cluster_info(args.name)
        healthy = is_healthy(info)
        print(f"cluster {info.name}: {'running' if healthy else 'not running'}")
        print(f"kubeconfig: {info.kubeconfig}")
        return 0 if healthy else 1
    return _nodes(args.name)


if __name__ == "__main__":
    sys.exit(main())
