"""``python -m deploy fetch``: download the pinned checkpoint revision into the Hugging Face cache.

huggingface_hub does the work: only the files vLLM reads (config, tokenizer, processor, chat template,
safetensors), its own progress bars, retries of dropped transfers, files already complete in the cache never
fetched twice (a rerun after an interruption downloads only what is missing), and the cache layout vLLM
looks in (``$HF_HOME/hub``). With ``HF_HUB_OFFLINE=1`` nothing is
downloaded: the command only checks that the snapshot is in the cache and says what to do when it is not.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deploy.errors import DeployError
from deploy.profiles import DEFAULT_REVISION, MODEL_ID, is_commit

# What vLLM needs to serve a text+image checkpoint; READMEs, images, GGUF or original/ copies are skipped.
ALLOW_PATTERNS: tuple[str, ...] = (
    "*.json",
    "*.safetensors",
    "*.jinja",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
)
TRUE_VALUES = {"1", "true", "yes", "on"}


class FetchError(DeployError, RuntimeError):
    """The checkpoint could not be fetched or found; the message says what to do."""


def offline(environ: dict[str, str] | None = None) -> bool:
    """Whether HF_HUB_OFFLINE asks for no network at all."""
    env = os.environ if environ is None else environ
    return env.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES


def model_and_revision(model: str | None, revision: str | None) -> tuple[str, str]:
    """The checkpoint to use: flags, else GEMMA4_MODEL / GEMMA4_REVISION, else the bundle's pinned default."""
    return (
        model or os.environ.get("GEMMA4_MODEL") or MODEL_ID,
        revision or os.environ.get("GEMMA4_REVISION") or DEFAULT_REVISION,
    )


def cached_snapshot(model: str, revision: str, cache_dir: Path | None = None) -> Path:
    """The local snapshot directory of ``model`` at ``revision``; raises :class:`FetchError` when not cached.

    A path to an existing directory is taken as the snapshot itself.
    """
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(
            model, revision=revision, cache_dir=cache_dir, local_files_only=True, allow_patterns=list(ALLOW_PATTERNS)
        )
    except (LocalEntryNotFoundError, FileNotFoundError) as exc:
        raise FetchError(
            f"{model}@{revision} is not in the Hugging Face cache ({_cache_location(cache_dir)}): run "
            "`python -m deploy fetch` with network access once (unset HF_HUB_OFFLINE), or mount the cache "
            "that holds it (GEMMA4_HF_CACHE)"
        ) from exc
    return Path(path)


def _cache_location(cache_dir: Path | None) -> str:
    if cache_dir:
        return str(cache_dir)
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def fetch(model: str, revision: str, cache_dir: Path | None = None) -> Path:
    """Download (or, offline, find) the snapshot; return its directory."""
    if Path(model).is_dir():
        return Path(model)
    if offline():
        return cached_snapshot(model, revision, cache_dir)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = snapshot_download(model, revision=revision, cache_dir=cache_dir, allow_patterns=list(ALLOW_PATTERNS))
    except GatedRepoError as exc:
        raise FetchError(
            f"{model} is gated: accept its licence on huggingface.co and give a token (HF_TOKEN_FILE)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise FetchError(f"{model} has no revision {revision!r}: check GEMMA4_REVISION") from exc
    except RepositoryNotFoundError as exc:
        raise FetchError(
            f"{model} does not exist on the Hub or needs a token: check GEMMA4_MODEL and HF_TOKEN_FILE"
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise FetchError(
            f"cannot reach the Hugging Face Hub to fetch {model}@{revision} and it is not cached: check the "
            "network or proxy (HTTPS_PROXY), then run again; files already downloaded are kept"
        ) from exc
    except HfHubHTTPError as exc:
        raise FetchError(f"the Hub refused the download of {model}@{revision}: {exc}") from exc
    return Path(path)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fetch`` subcommand."""
    p = subparsers.add_parser("fetch", help="download the pinned checkpoint into the Hugging Face cache")
    add_checkpoint_arguments(p)
    p.set_defaults(handler=run)


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    """--model, --revision and --cache-dir, shared by fetch and verify."""
    p.add_argument("--model", help=f"Hub id or local directory (default: $GEMMA4_MODEL or {MODEL_ID})")
    p.add_argument("--revision", help=f"branch, tag or commit (default: $GEMMA4_REVISION or {DEFAULT_REVISION})")
    p.add_argument("--cache-dir", type=Path, help="Hugging Face hub cache (default: $HF_HOME/hub)")


def snapshot_commit(snapshot: Path) -> str | None:
    """The commit a Hugging Face cache snapshot holds (its folder name), or None outside the cache layout."""
    if snapshot.parent.name == "snapshots" and is_commit(snapshot.name):
        return snapshot.name
    return None


def unpinned_note(model: str, revision: str, commit: str | None) -> str | None:
    """A warning when ``revision`` can move (a branch or tag), naming the commit to pin; None when pinned."""
    if is_commit(revision) or commit is None:
        return None
    return (
        f"note: {model}@{revision} is a branch or tag, so a later fetch may bring other bytes; it resolved to "
        f"commit {commit}. Pin it: GEMMA4_REVISION={commit} (Helm: serving.revision)"
    )


def run(args: argparse.Namespace) -> int:
    """Fetch; exit 0 with the snapshot path printed, 1 when it cannot be fetched or found."""
    model, revision = model_and_revision(args.model, args.revision)
    mode = "checking the cache for" if offline() else "fetching"
    print(f"deploy fetch: {mode} {model}@{revision}", file=sys.stderr)
    try:
        path = fetch(model, revision, args.cache_dir)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if note := unpinned_note(model, revision, snapshot_commit(path)):
        print(note, file=sys.stderr)
    print(path)
    return 0
