"""The Kubernetes Events a pass decides to post on its DSD (pure data).

Decided by :mod:`.planning_step` (planning decisions) and :mod:`.canary` (rollout steps);
posted by :mod:`.handlers` through kopf after the pass has written status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One Kubernetes Event to post on the DSD."""

    type: str
    """``Normal`` or ``Warning``."""
    reason: str
    """CamelCase reason, e.g. ``Planned``, ``Replanned``, ``PlanFailed``."""
    message: str
    """What happened, for ``kubectl describe``."""


Emit = Callable[[EventSpec], None]
"""Posts one Event on the DSD a pass works on."""
