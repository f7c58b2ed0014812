"""Pure decisions of the operator's own control loops (no I/O, no kopf, no client).

:mod:`.decide` is the native autoscaler's replica decision (Knative KPA style, startup
aware); :mod:`.circuit` the per-track circuit breaker state machine. The controllers
(:mod:`deepseek_operator.controllers.autoscaler`, ``.circuit_breaker``) gather the facts
from Prometheus and the apiserver, call these, and write the results.
"""
