"""The suite's settings: one frozen value built from command-line options, then SMOKE_* variables, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SERVERS = ("vllm", "sglang", "llamacpp", "generic")
LEVELS = ("protocol", "full")
# Opt-in server features with checks of their own (deploy/profiles/features); `auto` asks the server.
FEATURES = ("tools", "reasoning", "audio")
# The context every deploy/profiles and deploy/engines file serves: the overflow check's size on a server that
# does not report its own (llama.cpp), unless --max-model-len says otherwise.
DEFAULT_CONTEXT = 32768


class UsageError(ValueError):
    """A bad option or environment variable; the message names it and the fix (exit code 2)."""


@dataclass(frozen=True)
class Settings:
    """Everything a check needs to know about the run. Build it with :func:`resolve`."""

    base_url: str
    model: str | None = None
    api_key: str | None = None
    server: str = "vllm"
    level: str = "full"
    wait_s: float = 120.0
    timeout_s: float = 60.0
    stall_timeout_s: float = 20.0
    # The context length the server must serve; None: read it from /v1/models (or DEFAULT_CONTEXT where the
    # server does not report it).
    max_model_len: int | None = None
    burst: int = 4
    features: str = "auto"

    @property
    def full(self) -> bool:
        """True when checks that need a real model to answer sensibly run too."""
        return self.level == "full"

    @property
    def feature_list(self) -> tuple[str, ...] | None:
        """The features named by ``--features`` (empty for ``none``), or None for ``auto`` (ask the server)."""
        words = [w.strip().lower() for w in self.features.replace(" ", ",").split(",") if w.strip()]
        if words == ["auto"]:
            return None
        return tuple(dict.fromkeys(w for w in words if w != "none"))


# option name -> (environment variable, type); the order is the order of `--help`.
ENV = {
    "base_url": ("SMOKE_BASE_URL", str),
    "model": ("SMOKE_MODEL", str),
    "api_key": ("SMOKE_API_KEY", str),
    "server": ("SMOKE_SERVER", str),
    "level": ("SMOKE_LEVEL", str),
    "wait_s": ("SMOKE_WAIT", float),
    "timeout_s": ("SMOKE_TIMEOUT", float),
    "stall_timeout_s": ("SMOKE_STALL_TIMEOUT", float),
    "max_model_len": ("SMOKE_MAX_MODEL_LEN", int),
    "burst": ("SMOKE_BURST", int),
    "features": ("SMOKE_FEATURES", str),
}
# Where the API key may come from instead of SMOKE_API_KEY: a file (a Kubernetes or compose secret).
API_KEY_FILE_ENV = "SMOKE_API_KEY_FILE"


def resolve(cli: Mapping[str, object | None], env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``cli`` values (None = not given), then ``env`` (empty = unset), then defaults.

    Raises :class:`UsageError` naming the option and its variable when a value is missing or invalid.
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, (variable, kind) in ENV.items():
        flag = "--" + name.removesuffix("_s").replace("_", "-")
        raw = cli.get(name)
        source = flag
        if raw is None and env.get(variable, "").strip():
            raw, source = env[variable].strip(), variable
        if raw is None:
            continue
        try:
            values[name] = kind(raw)
        except (TypeError, ValueError):
            raise UsageError(f"{source}={raw!r} is not a valid {kind.__name__}") from None
    if "api_key" not in values and env.get(API_KEY_FILE_ENV, "").strip():
        path = Path(env[API_KEY_FILE_ENV].strip())
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise UsageError(
                f"{API_KEY_FILE_ENV}={path} cannot be read ({exc.strerror}); mount the key file there"
            ) from None
        if key:
            values["api_key"] = key
    if "base_url" not in values:
        raise UsageError("no server to test: pass --base-url http://HOST:PORT or set SMOKE_BASE_URL")
    # Users paste the OpenAI base URL (.../v1) as often as the server's; the checks add /v1 themselves.
    values["base_url"] = str(values["base_url"]).rstrip("/").removesuffix("/v1")
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    """Reject values that cannot work, naming the option and the expected form."""
    url = urlsplit(s.base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise UsageError(f"--base-url must be an http(s) URL like http://127.0.0.1:8000, not {s.base_url!r}")
    if s.server not in SERVERS:
        raise UsageError(f"--server must be one of {', '.join(SERVERS)}, not {s.server!r}")
    if s.level not in LEVELS:
        raise UsageError(f"--level must be one of {', '.join(LEVELS)}, not {s.level!r}")
    for name in ("wait_s", "timeout_s", "stall_timeout_s"):
        value = getattr(s, name)
        if value < 0 or (name != "wait_s" and value == 0):
            flag = "--" + name.removesuffix("_s").replace("_", "-")
            raise UsageError(f"{flag} must be a positive number of seconds, not {value:g}")
    if s.max_model_len is not None and s.max_model_len < 16:
        raise UsageError(f"--max-model-len must be the served context length in tokens, not {s.max_model_len}")
    if not 1 <= s.burst <= 64:
        raise UsageError(f"--burst must be between 1 and 64 concurrent streams, not {s.burst}")
    words = [w.strip().lower() for w in s.features.replace(" ", ",").split(",") if w.strip()]
    unknown = [w for w in words if w not in (*FEATURES, "none", "auto")]
    if unknown or not words or ("auto" in words and len(words) > 1):
        raise UsageError(
            f"--features must be `auto`, `none` or a comma-separated list of {', '.join(FEATURES)}, not {s.features!r}"
        )
