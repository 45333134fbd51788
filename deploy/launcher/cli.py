"""``python -m deploy launch``: the vLLM image's entrypoint, as a command line.

Reads the GPU (:mod:`deploy.launcher.gpu`), picks the one vLLM will use, lets :func:`deploy.launcher.resolve.resolve`
turn the environment into a config, prints it, and execs ``vllm serve``. The steps themselves are described in
:mod:`deploy.launcher.resolve`.

Exit codes (when nothing is exec'd): 0 dry run, 1 will not fit, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from deploy.launcher import versions
from deploy.launcher.gpu import GPU, GPUError, detect
from deploy.launcher.resolve import LaunchError, command, fit_summary, resolve, write_config
from deploy.profiles import to_argv


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``launch`` subcommand."""
    p = subparsers.add_parser(
        "launch", help="pick the profile for this GPU and exec `vllm serve` (the image's entrypoint)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved command and stop")
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        help="where to write resolved.yaml (default: $GEMMA4_RESOLVED_DIR or a temporary directory)",
    )
    p.set_defaults(handler=run)


def pick_gpu(gpus: list[GPU], environ: Mapping[str, str]) -> GPU:
    """The GPU vLLM will use: the first visible one, or the one CUDA_VISIBLE_DEVICES names first.

    nvidia-smi ignores CUDA_VISIBLE_DEVICES while CUDA honours it, so a host with several GPUs and
    ``CUDA_VISIBLE_DEVICES=1`` must be planned for GPU 1. An entry may be an index or a ``GPU-``/``MIG-`` UUID.
    (In compose and Kubernetes the container sees only its own GPU, which is then the first.)
    """
    visible = environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    for gpu in gpus:
        if (visible.isdigit() and gpu.index == int(visible) and not gpu.mig_profile) or (
            visible and gpu.uuid == visible
        ):
            return gpu
    return gpus[0]


def device_order(gpus: list[GPU], environ: Mapping[str, str]) -> str | None:
    """``PCI_BUS_ID`` when different GPUs are visible and CUDA_DEVICE_ORDER is unset; raise on any other order.

    CUDA numbers devices fastest first by default while nvidia-smi numbers them by PCI bus, so with mixed GPUs
    "GPU 0" may be two different cards (vLLM warns about this too, vllm/platforms/cuda.py). The launcher makes
    CUDA use nvidia-smi's order so the plan is for the card vLLM gets.
    """
    if len({g.name for g in gpus}) < 2:
        return None
    order = environ.get("CUDA_DEVICE_ORDER", "")
    if not order:
        return "PCI_BUS_ID"
    if order != "PCI_BUS_ID":
        raise LaunchError(
            f"CUDA_DEVICE_ORDER={order} with different GPUs ({', '.join(sorted({g.name for g in gpus}))}): the "
            "launcher cannot tell which card CUDA calls device 0. Unset CUDA_DEVICE_ORDER or set it to PCI_BUS_ID"
        )
    return None


def run(args: argparse.Namespace) -> int:
    """Resolve, print, exec vLLM (or stop with a message and exit 1/2)."""
    if versions.announce():  # the engine's versions first; a transformers vLLM cannot run with stops here
        return 2
    gpu = None
    try:
        gpus = detect()
        order = device_order(gpus, os.environ)
        gpu = pick_gpu(gpus, os.environ)
    except GPUError as exc:
        if (os.environ.get("GEMMA4_PROFILE") or "auto") == "auto":
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"warning: {exc}", file=sys.stderr)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    try:
        resolved = resolve(os.environ, gpu)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    directory = args.config_dir or Path(
        os.environ.get("GEMMA4_RESOLVED_DIR") or Path(tempfile.gettempdir()) / "gemma4-serve"
    )
    if gpu is not None and order:
        # vLLM inherits this through exec: CUDA's device 0 is then nvidia-smi's GPU the plan was made for.
        os.environ["CUDA_DEVICE_ORDER"] = order
        resolved.notes.append(
            f"CUDA_DEVICE_ORDER={order}: different GPUs are visible; CUDA now numbers them as nvidia-smi does"
        )
    path = write_config(resolved, directory)
    for note in resolved.notes:
        print(f"launch: {note}")
    if resolved.plan is not None:
        print(fit_summary(resolved.plan))
    print("resolved arguments: " + shlex.join(to_argv(resolved.config) + resolved.extra_args))
    cmd = command(path, resolved.extra_args)
    print("exec: " + shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    os.execvp(cmd[0], cmd)
    return 0  # not reached
