"""``python -m deploy``: the bundle's command line.

Each subcommand lives in its own module, which exposes ``register(subparsers)``. The base install
(``pip install gemma4-serve``) has only the smoke suite's dependencies, so a subcommand whose extra is
missing must not break the others: its module is imported inside a guard, and when a third-party import
fails the subcommand answers with the extra to install (exit 2) instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from deploy.errors import DeployError
from deploy.launcher.secret_files import SecretFileError, load_secret_files

# Subcommand name -> (module that registers it, the pyproject extra its dependencies come from).
COMMANDS: dict[str, tuple[str, str | None]] = {
    "bench": ("deploy.bench.cli", "bench"),
    "drain": ("deploy.launcher.drain", None),
    "probe": ("deploy.launcher.probe", None),
    "engine": ("deploy.engines.cli", "engines"),
    "profiles": ("deploy.profiles.cli", None),
    "quality": ("deploy.quality.cli", "bench"),
    "fit": ("deploy.planner.cli", "deploy"),
    "launch": ("deploy.launcher.cli", None),
    "fetch": ("deploy.checkpoint.fetch", "deploy"),
    "verify": ("deploy.checkpoint.verify", "deploy"),
}

# What each extra of pyproject.toml brings, as import names (tests/unit/test_cli_extras.py checks this
# table against pyproject.toml). A missing module is blamed on the subcommand's own extra when that extra
# brings it, else on the first extra that does.
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "deploy": frozenset({"huggingface_hub", "compressed_tensors", "safetensors", "tqdm"}),
    "bench": frozenset({"numpy", "tqdm", "PIL", "uvicorn", "tokenizers", "aiohttp", "matplotlib"}),
    "eval": frozenset({"lm_eval"}),
    "engines": frozenset({"huggingface_hub", "gguf", "yaml"}),
}


def missing_extra_message(command: str, exc: ModuleNotFoundError) -> str:
    """The one-line fix for a subcommand whose dependency is not installed."""
    module = (exc.name or "").split(".")[0]
    own = COMMANDS[command][1]
    providers = [extra for extra, modules in EXTRA_MODULES.items() if module in modules]
    extra = own if own in providers else (providers[0] if providers else own)
    fix = f"install 'gemma4-serve[{extra}]'" if extra else "reinstall gemma4-serve"
    return f"error: `python -m deploy {command}` needs the Python package {module!r}, which is not installed: {fix}"


def _is_third_party(exc: ModuleNotFoundError) -> bool:
    """True when the missing module is a dependency, not a module of this package (a bug, not an extra)."""
    return bool(exc.name) and exc.name.split(".")[0] not in ("deploy", "smoke_tests")


def build_parser(unavailable: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every subcommand whose module imports; the others land in ``unavailable``.

    ``unavailable`` maps such a subcommand to the message naming its extra; ``--help`` lists it as unavailable.
    """
    unavailable = {} if unavailable is None else unavailable
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, (module_name, _extra) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not _is_third_party(exc):
                raise
            unavailable[command] = missing_extra_message(command, exc)
            subparsers.add_parser(command, help=f"(unavailable: {unavailable[command].split(': ')[-1]})")
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its handler returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    unavailable: dict[str, str] = {}
    parser = build_parser(unavailable)
    if argv and argv[0] in unavailable:  # before parsing: whatever follows (--help too) gets the fix
        print(unavailable[argv[0]], file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        # Into this process's environment on purpose: the launcher execs vLLM with it.
        load_secret_files(os.environ)
    except SecretFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.handler(args) or 0)
    except DeployError as exc:  # a handler that did not catch its own error still gets one clean line
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        # A handler's own deferred import (huggingface_hub inside fetch, say) is the same missing extra.
        if not _is_third_party(exc):
            raise
        print(missing_extra_message(args.command, exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
