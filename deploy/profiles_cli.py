"""``python -m deploy profiles``: list profiles or print one as YAML or as a ``vllm serve`` command."""

from __future__ import annotations

import argparse
import shlex
import sys

import yaml

from deploy.profiles import ProfileError, list_profiles, load_profile, to_argv


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profiles`` subcommand."""
    p = subparsers.add_parser("profiles", help="list serving profiles or show one")
    p.add_argument("name", nargs="?", help="profile to show; omit to list them all")
    p.add_argument("--argv", action="store_true", help="print the profile as a `vllm serve` command")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """List profiles, or print one; exit 2 on an unknown name."""
    if not args.name:
        print("\n".join(list_profiles()))
        return 0
    try:
        config = load_profile(args.name)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.argv:
        print(shlex.join(["vllm", "serve", *to_argv(config)]))
    else:
        print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0
