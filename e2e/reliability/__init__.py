"""Fault, overload, slow-client and fuzz suites (issue 13): each returns a report of counts.

The suites are plain functions so that the pytest tests here run them with small
settings and ``bench/reliability.py`` runs them longer and prints their reports as JSON.
Runtime suites attack real ``deepseek-runtime serve`` processes on loopback
(``server.RuntimeServer``); operator suites use the real apiserver of the local cluster
and the operator as a subprocess (``e2e.operator_harness``).
"""
