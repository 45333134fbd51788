"""Running the smoke suite against a real server from the engine tests, and reading its report."""

from __future__ import annotations

import json
import os
from pathlib import Path

from smoke_tests.__main__ import main

# --level protocol skips these: random weights cannot answer them (tests/e2e shows them failing on a real
# server and passing against a stub that answers right).
ANSWER_CHECKS = frozenset({"answers.arithmetic", "answers.image_colour[red]", "answers.image_colour[blue]"})
AUTH_CHECKS = frozenset({"auth.missing_key_rejected", "auth.wrong_key_rejected", "auth.health_open"})
# The opt-in feature checks (docs/features.md) skip on a server started without those features.
FEATURE_MODULES = ("tools.", "reasoning.", "audio.")


def skipped_beyond_features(report: dict) -> set[str]:
    """The skipped checks, less those of features the server was not started with."""
    return {name for name in outcomes(report, "skipped") if not name.startswith(FEATURE_MODULES)}


def smoke_runs() -> int:
    """How often the engine tests repeat the suite per server: ``ENGINE_SMOKE_RUNS`` (make test 3, test-engine 30)."""
    return max(1, int(os.environ.get("ENGINE_SMOKE_RUNS", "3")))


def run_suite(url: str, workdir: Path, *args: str) -> tuple[int, dict]:
    """``python -m smoke_tests --server vllm --level protocol`` in-process; the exit code and the JSON report."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.json"
    report.unlink(missing_ok=True)
    code = main(
        ["--base-url", url, "--server", "vllm", "--level", "protocol", "--wait", "60", "--json", str(report), *args]
    )
    return code, json.loads(report.read_text())


def outcomes(report: dict, outcome: str) -> dict[str, str]:
    """Check name -> message for every check that ended with ``outcome``."""
    return {c["name"]: c["message"] for c in report["checks"] if c["outcome"] == outcome}
