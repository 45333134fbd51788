"""``python -m deploy profiles``: list profiles and features, or print one profile as YAML or as a command.

python -m deploy profiles                                  # the profiles, then the opt-in features
python -m deploy profiles gpu-24gb --features tools,audio  # that profile with those features merged in
python -m deploy profiles gpu-24gb --argv                  # as a `vllm serve` command line
"""

from __future__ import annotations

import argparse
import shlex
import sys

import yaml

from deploy.profiles import (
    FEATURES_ENV,
    ProfileError,
    apply_features,
    feature_summary,
    list_features,
    list_profiles,
    load_profile,
    parse_features,
    to_argv,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``profiles`` subcommand."""
    p = subparsers.add_parser("profiles", help="list serving profiles and features, or show one profile")
    p.add_argument("name", nargs="?", help="profile to show; omit to list them all")
    p.add_argument("--argv", action="store_true", help="print the profile as a `vllm serve` command")
    p.add_argument(
        "--features",
        metavar="LIST",
        help=f"merge these opt-in features into the profile, as {FEATURES_ENV} does (e.g. tools,reasoning)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """List profiles and features, or print one profile; exit 2 on an unknown name."""
    if not args.name:
        print("\n".join(list_profiles()))
        features = list_features()
        if features:
            print(f"\nfeatures ({FEATURES_ENV}=a,b; Helm serving.features):")
            for name in features:
                print(f"  {name:<10} {feature_summary(name)}")
        return 0
    try:
        config = apply_features(load_profile(args.name), parse_features(args.features))
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.argv:
        print(shlex.join(["vllm", "serve", *to_argv(config)]))
    else:
        print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0
