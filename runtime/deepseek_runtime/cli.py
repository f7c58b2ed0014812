"""``deepseek-runtime`` command line: one sub-command per job, each defined in its own module.

Sub-commands are imported lazily so that ``deepseek-runtime --help`` and ``make-tiny``
do not pay for importing the HTTP server (and vice versa).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, help). Each module defines ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "make-tiny": (
        "deepseek_runtime.checkpoint.make_tiny",
        "write a small random-weight DeepSeek checkpoint in Hugging Face format",
    ),
    "serve": (
        "deepseek_runtime.server.cli",
        "serve a checkpoint over an OpenAI-compatible HTTP API",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepseek-runtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        # Parsers are cheap to build only if the module is; resolve it on demand below.
        modules[name] = (module_name, sub_parser)
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    if command in modules:
        module_name, sub_parser = modules[command]
        importlib.import_module(module_name).add_arguments(sub_parser)
    args = parser.parse_args(args_list)
    module = importlib.import_module(modules[args.command][0])
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
