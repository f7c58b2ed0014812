"""Pure GPU-aware planning: model catalog, memory model, GPU inventory, sharding planner.

No I/O and no Kubernetes client here (enforced by ``.importlinter``). Entry points:
:func:`inventory_from_nodes` (Node dicts -> :class:`GpuInventory`) and
:func:`plan_deployment` (spec + inventory [+ config.json] -> :class:`Plan`, or
:class:`PlanningError` with the reason and what would fit).
"""

from deepseek_operator.planning.architecture import ModelArchitecture, architecture_from_config
from deepseek_operator.planning.catalog import catalog_names, lookup
from deepseek_operator.planning.inventory import (
    GpuInventory,
    GpuNode,
    GpuPool,
    inventory_from_nodes,
)
from deepseek_operator.planning.plan import Plan, PlanningError
from deepseek_operator.planning.planner import plan_deployment

__all__ = [
    "GpuInventory",
    "GpuNode",
    "GpuPool",
    "ModelArchitecture",
    "Plan",
    "PlanningError",
    "architecture_from_config",
    "catalog_names",
    "inventory_from_nodes",
    "lookup",
    "plan_deployment",
]
