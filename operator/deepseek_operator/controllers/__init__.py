"""Kopf controller of DeepSeekDeployment: the only layer of the operator that does I/O.

``deepseek-operator run`` calls :func:`run` (argv list) or :func:`run_operator`
(an :class:`~.main.OperatorOptions`).  Modules: :mod:`.main` (entry point, settings),
:mod:`.handlers` (kopf handlers), :mod:`.reconcile` (one pass), :mod:`.kube` (API
client), and the pure helpers :mod:`.decide`, :mod:`.status`, :mod:`.semantic`,
:mod:`.nodes`, :mod:`.peering`.
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
