"""``python -m smoke_tests``: run the smoke suite against a server and report.

Exit codes (stable; deploy pipelines depend on them):

- 0: every selected check passed (skipped checks do not count against it)
- 1: at least one check failed; one ``FAILED <check>: <reason>`` line each
- 2: bad usage (an unknown option, an invalid value, ``--select`` matching no check)
- 3: the server never became ready within ``--wait`` (every other check is skipped)
- 4: the suite itself broke (a pytest internal error); please report it
- 130: interrupted (Ctrl-C, SIGINT)

Every option can also come from its SMOKE_* environment variable (the command line wins; an empty variable
counts as unset), which is how compose's ``smoke`` service and the Helm test pod configure it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from rich.console import Console

from smoke_tests import __version__
from smoke_tests.plugin import SETTINGS_PLUGIN
from smoke_tests.report import Collector, RunReport, markdown, print_table, write_json
from smoke_tests.settings import ENV, LEVELS, SERVERS, Settings, UsageError, resolve

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_READY, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
PACKAGE_DIR = Path(__file__).resolve().parent
READY_CHECK = "ready.server_ready"


class _SettingsHolder:
    """Hands the resolved settings to the suite's fixtures (see plugin.settings)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default is None so the environment can fill it (see settings.resolve)."""
    parser = argparse.ArgumentParser(
        prog="python -m smoke_tests",
        description="Prove that an OpenAI-compatible deployment serves text and image chat completions.",
        epilog="Exit codes: 0 passed, 1 a check failed, 2 bad usage, 3 server never ready, 4 internal error, "
        "130 interrupted. Details: docs/smoke-tests.md",
        exit_on_error=False,
    )
    env = {name: variable for name, (variable, _) in ENV.items()}

    def option(flag: str, name: str, help_text: str, **kwargs: object) -> None:
        parser.add_argument(flag, dest=name, default=None, help=f"{help_text} [{env[name]}]", **kwargs)

    option("--base-url", "base_url", "server URL, e.g. http://127.0.0.1:8000 (required)", metavar="URL")
    option("--model", "model", "model to test (default: the first one /v1/models lists)", metavar="NAME")
    option("--api-key", "api_key", "API key; also read from the file named by SMOKE_API_KEY_FILE", metavar="KEY")
    option("--server", "server", "documented behaviour to enforce (default vllm)", choices=SERVERS)
    option("--level", "level", "protocol: API only; full (default): also check answers make sense", choices=LEVELS)
    option("--wait", "wait_s", "seconds to wait for the server to become ready (default 120)", type=float)
    option("--timeout", "timeout_s", "seconds one request may take (default 60)", type=float)
    option("--stall-timeout", "stall_timeout_s", "seconds a stream may go silent (default 20)", type=float)
    option(
        "--max-model-len",
        "max_model_len",
        "context length the server must serve (default: what /v1/models reports; 32768 where it reports none)",
        type=int,
    )
    option("--burst", "burst", "concurrent streams in the burst check (default 4)", type=int)
    option(
        "--features",
        "features",
        "opt-in features the server runs, e.g. tools,reasoning,audio; `none`; `auto` (default) asks the server",
        metavar="LIST",
    )
    parser.add_argument("--junitxml", metavar="FILE", help="write JUnit XML, one test case per check [SMOKE_JUNITXML]")
    parser.add_argument("--json", metavar="FILE", help="write a JSON report [SMOKE_JSON]")
    parser.add_argument("--markdown", metavar="FILE", help="write a Markdown summary [SMOKE_MARKDOWN]")
    parser.add_argument("--select", metavar="EXPR", help="run only checks matching a pytest -k expression")
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output and tracebacks")
    parser.add_argument("--version", action="version", version=f"gemma4-serve smoke {__version__}")
    return parser


def pytest_args(options: argparse.Namespace, junitxml: str | None) -> list[str]:
    """Pytest's command line: this package only, no config file, no cache, no third-party plugins."""
    args = [
        str(PACKAGE_DIR),
        "-c",
        os.devnull,
        "--rootdir",
        str(PACKAGE_DIR),
        "-p",
        "no:cacheprovider",
        "-o",
        "junit_suite_name=gemma4-serve-smoke",
        "-o",
        "junit_family=xunit2",
    ]
    # Third-party pytest plugins installed beside the suite (pytest-timeout, anyio...) stay out of its runs.
    if pytest.version_tuple >= (8, 4):
        args.append("--disable-plugin-autoload")
    args += ["-v", "--tb=short"] if options.verbose else ["-p", "no:terminal"]
    if options.select:
        args += ["-k", options.select]
    if junitxml:
        args += ["--junitxml", junitxml]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        options = parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version, or argparse's own usage errors
        return int(exc.code or 0)
    cli = {name: getattr(options, name) for name in ENV}
    try:
        settings = resolve(cli)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    outputs = {
        kind: getattr(options, kind) or os.environ.get(f"SMOKE_{kind.upper()}", "").strip() or None
        for kind in ("junitxml", "json", "markdown")
    }
    console = Console(highlight=False)
    collector = Collector()
    started = time.monotonic()
    if pytest.version_tuple < (8, 4):  # no --disable-plugin-autoload yet: the variable does the same
        os.environ.setdefault("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    try:
        code = pytest.main(
            pytest_args(options, outputs["junitxml"]),
            plugins=[collector, _PluginName(_SettingsHolder(settings))],
        )
    except KeyboardInterrupt:
        code = pytest.ExitCode.INTERRUPTED
    run = RunReport(settings, collector.ordered(), time.monotonic() - started)
    run.exit_code = _exit_code(code, run)
    if run.exit_code == EXIT_USAGE and not run.checks:
        print(f"error: --select {options.select!r} matched no check", file=sys.stderr)
    else:
        print_table(run, console)
    try:
        if outputs["json"]:
            write_json(run, outputs["json"])
        if outputs["markdown"]:
            Path(outputs["markdown"]).write_text(markdown(run), encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write a report: {exc}; point --json/--markdown at a writable path", file=sys.stderr)
        return max(run.exit_code, EXIT_FAILED)
    written = [path for path in outputs.values() if path]
    if written:
        console.print(f"reports: {', '.join(written)}", markup=False, highlight=False)
    return run.exit_code


class _PluginName:
    """Register a plugin object under :data:`SETTINGS_PLUGIN` so fixtures can find it by name."""

    def __init__(self, holder: _SettingsHolder) -> None:
        self.holder = holder

    def pytest_configure(self, config: pytest.Config) -> None:
        """Register the holder under its well-known name."""
        config.pluginmanager.register(self.holder, SETTINGS_PLUGIN)


def _exit_code(code: int | pytest.ExitCode, run: RunReport) -> int:
    """Map pytest's exit status and the results onto the suite's documented codes."""
    if code == pytest.ExitCode.INTERRUPTED:
        return EXIT_INTERRUPTED
    if code == pytest.ExitCode.NO_TESTS_COLLECTED or code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE
    if code == pytest.ExitCode.INTERNAL_ERROR:
        return EXIT_INTERNAL
    if any(c.name == READY_CHECK and c.outcome == "failed" for c in run.checks):
        return EXIT_NOT_READY
    if run.count("failed") or code == pytest.ExitCode.TESTS_FAILED:
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
