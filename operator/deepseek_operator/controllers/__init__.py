"""Kopf controller of DeepSeekDeployment: the only layer of the operator that does I/O.

``deepseek-operator run`` calls :func:`run` (argv list) or :func:`run_operator`
(an :class:`~.main.OperatorOptions`).  Modules: :mod:`.main` (entry point, settings),
:mod:`.handlers` (kopf handlers), :mod:`.indices` (their kopf indices), :mod:`.context`
(what they share, through kopf's memo), :mod:`.reconcile` (one pass),
:mod:`.status_writer` (status patches), :mod:`.kube` (API client), and the pure helpers
:mod:`.planning_step`, :mod:`.model_config`, :mod:`.status`, :mod:`.canary`,
:mod:`.semantic`, :mod:`.kinds`, :mod:`.nodes`, :mod:`.peering`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .main import OperatorOptions

__all__ = ["run", "run_operator"]


def run(argv: Sequence[str] | None = None) -> int:
    """Parse ``run`` flags from ``argv`` and run the operator until stopped."""
    from .main import run as _run  # noqa: PLC0415 - keep `deepseek-operator --help` light

    return _run(argv)


def run_operator(options: OperatorOptions) -> int:
    """Run the operator with already-parsed options."""
    from .main import run_operator as _run_operator  # noqa: PLC0415

    return _run_operator(options)
