"""``python -m deploy engine``: the alternative engines (SGLang, llama.cpp) from deploy/engines/*.yaml.

``engine`` lists the engines, their devices, variants and images. ``engine argv llamacpp --variant q4_0
--device cpu`` prints the server command with stand-in file paths. ``engine fetch llamacpp --write-args
FILE`` downloads and verifies the pinned files, then writes the command (real paths) for the server
container to source.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from deploy.engines import (
    EngineError,
    args_script,
    fetch,
    list_engines,
    load_engine,
    placeholder_paths,
    render_argv,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``engine`` subcommand."""
    p = subparsers.add_parser("engine", help="SGLang / llama.cpp: list, render the command, fetch and verify")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    for name, help_text in (
        ("argv", "print the server command (stand-in paths for the model files)"),
        ("fetch", "download and verify the pinned files into the Hugging Face cache; optionally write the command"),
    ):
        a = sub.add_parser(name, help=help_text)
        a.add_argument("engine", help="engine name: " + ", ".join(list_engines()))
        a.add_argument("--device", default="gpu", help="gpu (default) or cpu, where the engine has a CPU image")
        a.add_argument(
            "--variant",
            default=None,
            help="checkpoint variant (quantization); default: $GEMMA4_<ENGINE>_QUANT, else the engine's first",
        )
        a.add_argument(
            "--extra-args",
            default=None,
            help="server flags appended after the engine's own, one shell-quoted string "
            "(default: $GEMMA4_<ENGINE>_EXTRA_ARGS)",
        )
        if name == "fetch":
            a.add_argument("--write-args", type=Path, help="write the command as a sourceable `set --` line here")
    p.set_defaults(handler=run)


def _extra_args(args: argparse.Namespace) -> str:
    if args.extra_args is not None:
        return args.extra_args
    return os.environ.get(f"GEMMA4_{args.engine.upper()}_EXTRA_ARGS", "")


def run(args: argparse.Namespace) -> int:
    """Dispatch an action; every failure is one line on stderr naming the fix, exit 2."""
    try:
        if not args.action:
            for name in list_engines():
                engine = load_engine(name)
                images = ", ".join(f"{d}={engine.image(d)}" for d in engine.devices)
                print(f"{name} {engine.data['release']}: variants {', '.join(engine.variants)}; {images}")
            return 0
        engine = load_engine(args.engine)
        variant = engine.variant(args.variant or os.environ.get(f"GEMMA4_{args.engine.upper()}_QUANT", ""))
        engine.device(args.device)
        if args.action == "argv":
            argv = render_argv(engine, placeholder_paths(engine, variant), args.device, _extra_args(args))
            print(shlex.join(argv))
            return 0
        paths = fetch(engine, variant)
        argv = render_argv(engine, paths, args.device, _extra_args(args))
        print(f"{engine.name} {variant}: verified {engine.repo}@{engine.revision[:12]}", file=sys.stderr)
        print(shlex.join(argv))
        if args.write_args:
            args.write_args.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.write_args.with_suffix(".tmp")
            tmp.write_text(args_script(argv))
            tmp.replace(args.write_args)  # the server never sources a half-written file
        return 0
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
