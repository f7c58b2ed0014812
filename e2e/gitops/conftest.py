"""The live part of the GitOps health tests reuses the operator fixtures of ``e2e/dsd``."""

from e2e.dsd.conftest import kube, namespace, operator, scope

__all__ = ["kube", "namespace", "operator", "scope"]
