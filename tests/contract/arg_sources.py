"""Every `vllm serve` argument list the project hands to vLLM, collected from the files that hold them.

Add a collector here when a new file starts passing arguments to vLLM (compose overrides, Helm
extraArgs, docs); test_vllm_args.py parses everything this module returns.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from deploy.profiles import PROFILES_DIR, list_profiles
from tests.contract.vllm_contract import ArgCase

# A fenced shell example in Markdown: `vllm serve ...` possibly continued with backslashes.
_SERVE_RE = re.compile(r"(?m)^\s*(?:\$\s*)?vllm serve\b((?:[^\n]*\\\n)*[^\n]*)")
# GEMMA4_EXTRA_ARGS override examples: quoted anywhere (`GEMMA4_EXTRA_ARGS="--max-num-seqs 16" make up`), or
# unquoted to the end of an env-file line, commented out or not (`# GEMMA4_EXTRA_ARGS=--max-num-seqs 16`).
_EXTRA_ARGS_RE = re.compile(
    r"""GEMMA4_EXTRA_ARGS=(?:(["'])(?P<quoted>.*?)\1|(?P<line>(?<=^GEMMA4_EXTRA_ARGS=)[^\s"'].*$))""", re.M
)


def profile_cases() -> list[ArgCase]:
    """Each profile, exactly as the launcher hands it to vLLM (`--config FILE`)."""
    return [
        ArgCase(f"deploy/profiles/{name}.yaml", ("--config", str(PROFILES_DIR / f"{name}.yaml")))
        for name in list_profiles()
    ]


def markdown_cases(repo: Path) -> list[ArgCase]:
    """`vllm serve` command lines in the project's Markdown (README and docs)."""
    cases = []
    for md in sorted([*repo.glob("*.md"), *repo.glob("docs/**/*.md"), *repo.glob("helm/*/README.md")]):
        for match in _SERVE_RE.finditer(md.read_text()):
            argv = shlex.split(match.group(1).replace("\\\n", " "), comments=True)
            rel = md.relative_to(repo)
            line = md.read_text()[: match.start()].count("\n") + 1
            cases.append(ArgCase(f"{rel}:{line}", tuple(argv)))
    return cases


def extra_args_cases(repo: Path) -> list[ArgCase]:
    """GEMMA4_EXTRA_ARGS examples in .env.example and the docs, appended to a profile as the launcher does."""
    files = [repo / ".env.example", *repo.glob("*.md"), *repo.glob("docs/**/*.md")]
    cases = []
    for path in sorted(p for p in files if p.is_file()):
        text = path.read_text()
        # Env-file lines may be commented out (`# GEMMA4_EXTRA_ARGS=...`): read them as if they were not.
        uncommented = re.sub(r"(?m)^#\s*(?=GEMMA4_EXTRA_ARGS=)", "", text)
        for match in _EXTRA_ARGS_RE.finditer(uncommented):
            value = match.group("quoted") if match.group("quoted") is not None else match.group("line")
            line = uncommented[: match.start()].count("\n") + 1
            argv = ("--config", str(PROFILES_DIR / "default.yaml"), *shlex.split(value))
            cases.append(ArgCase(f"{path.relative_to(repo)}:{line}", argv))
    return cases


def launcher_cases() -> list[ArgCase]:
    """What the launcher execs for a GPU of each class (fake GPUs, no nvidia-smi), plus override examples.

    The resolved config is written to a temporary directory exactly as `deploy launch` writes it.
    """
    import tempfile

    from deploy.launcher.gpu import GPU
    from deploy.launcher.resolve import resolve, write_config
    from deploy.planner.gpu_classes import load_classes, parse_compute_capability

    out_dir = Path(tempfile.mkdtemp(prefix="gemma4-launcher-cases-"))
    mib = 1024**2
    examples: list[tuple[str, GPU, dict[str, str]]] = []
    for cls in load_classes():
        for variant, info in cls.variants.items():
            cc = parse_compute_capability(info["compute_capability"])
            gpu = GPU(0, info["cards"][0], cls.memory_mib * mib, (cls.memory_mib - 300) * mib, cc)
            examples.append((f"{cls.name}-{variant}", gpu, {}))
    a10 = GPU(0, "NVIDIA A10", 23028 * mib, 22728 * mib, (8, 6))
    examples.append(("a10-forced-fp8-profile", a10, {"GEMMA4_PROFILE": "gpu-24gb"}))
    examples.append(("a10-extra-args", a10, {"GEMMA4_EXTRA_ARGS": "--max-num-seqs 8 --limit-mm-per-prompt.image 2"}))
    cases = []
    for label, gpu, env in examples:
        resolved = resolve(env, gpu)
        path = write_config(resolved, out_dir / label)
        cases.append(
            ArgCase(f"deploy launch ({label}: {resolved.profile})", ("--config", str(path), *resolved.extra_args))
        )
    return cases


def helm_cases(repo: Path) -> list[ArgCase]:
    """What the launcher execs in the vLLM pod of each chart case (every `ci/*-values.yaml`, every profile forced
    by name), from the environment Helm renders.

    Read from `helm template` output (not from the values), so the chart's shell quoting and its port are under
    test too: the launcher resolves the rendered GEMMA4_* variables exactly as in the pod (a forced profile with
    no GPU information; `auto` on an NVIDIA L4) and writes the config vLLM gets.
    """
    import tempfile

    from deploy.launcher.gpu import GPU
    from deploy.launcher.resolve import resolve, write_config
    from tests.contract import helm_chart

    out_dir = Path(tempfile.mkdtemp(prefix="gemma4-helm-cases-"))
    l4 = GPU(0, "NVIDIA L4", 23034 * 1024**2, 22700 * 1024**2, (8, 9))
    cases = []
    for case, rendered in helm_chart.render_cases().items():
        server = helm_chart.container(rendered.one("Deployment"))
        if server["name"] != "vllm":
            continue  # another engine: its engine.extraArgs are checked in test_engine_args.py
        env = {k: v for k, v in helm_chart.env_of(server).items() if k.startswith("GEMMA4_") and isinstance(v, str)}
        resolved = resolve(env, l4 if env["GEMMA4_PROFILE"] == "auto" else None)
        path = write_config(resolved, out_dir / case.name)
        cases.append(ArgCase(case.source, ("--config", str(path), *resolved.extra_args)))
    return cases


def all_cases(repo: Path) -> list[ArgCase]:
    """Everything the contract must accept."""
    return [
        *profile_cases(),
        *markdown_cases(repo),
        *extra_args_cases(repo),
        *helm_cases(repo),
        *launcher_cases(),
    ]
