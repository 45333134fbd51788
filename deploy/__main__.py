"""``python -m deploy``: the bundle's command line.

Each subcommand lives in its own module, which exposes ``register(subparsers)``; the module is imported
only to build its parser, so ``python -m deploy profiles`` needs no heavy dependency.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from deploy.secret_files import SecretFileError, load_secret_files

# Subcommand name -> module that registers it.
COMMANDS: dict[str, str] = {
    "bench": "deploy.bench.cli",
    "drain": "deploy.drain",
    "probe": "deploy.probe",
    "engine": "deploy.engines_cli",
    "profiles": "deploy.profiles_cli",
    "quality": "deploy.quality.cli",
    "fit": "deploy.fit_cli",
    "launch": "deploy.launch",
    "fetch": "deploy.fetch",
    "verify": "deploy.verify",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its handler returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Into this process's environment on purpose: the launcher execs vLLM with it.
        load_secret_files(os.environ)
    except SecretFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
