"""Live data plane for e2e: real runtimes behind kwok pods, a real Prometheus, loopback load.

See :mod:`e2e.live.harness` for the API and docs/testing-live.md for the design.
"""
