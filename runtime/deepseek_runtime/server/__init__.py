"""OpenAI-compatible HTTP server (and KServe v2 faces) over an :class:`AsyncEngine`.

Entry points: ``server.cli`` (``deepseek-runtime serve``) and ``server.app.build_app``.
"""
