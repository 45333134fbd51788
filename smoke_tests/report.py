"""Results of a run and their renderings: the console table, JSON and Markdown (JUnit XML is pytest's own)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smoke_tests.settings import Settings

# A check that never reported: the run was interrupted before it.
NOT_RUN = "not run"
OUTCOME_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow", NOT_RUN: "dim"}
OUTCOMES = ("passed", "failed", "skipped", NOT_RUN)
# The table keeps reasons short; the full reason of each failure is printed on its own line below it.
TABLE_NOTE_CHARS = 90


@dataclass
class CheckResult:
    """One check's outcome, time and one-line reason."""

    name: str
    description: str
    outcome: str  # passed | failed | skipped | not run
    duration_s: float
    message: str = ""
    detail: str = ""


@dataclass
class RunReport:
    """Everything a report shows about one run."""

    settings: Settings
    checks: list[CheckResult] = field(default_factory=list)
    duration_s: float = 0.0
    exit_code: int = 0

    def count(self, outcome: str) -> int:
        """How many checks ended with ``outcome``."""
        return sum(c.outcome == outcome for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (the API key is never included)."""
        settings = {k: v for k, v in asdict(self.settings).items() if k != "api_key"}
        settings["api_key_set"] = bool(self.settings.api_key)
        return {
            "suite": "gemma4-serve smoke",
            "settings": settings,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "summary": {o.replace(" ", "_"): self.count(o) for o in OUTCOMES},
            "checks": [asdict(c) | {"duration_s": round(c.duration_s, 3)} for c in self.checks],
        }


class Collector:
    """pytest plugin gathering one :class:`CheckResult` per check, with the reason a check failed or skipped."""

    def __init__(self) -> None:
        self.results: dict[str, CheckResult] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold setup/call/teardown reports into one result per test (the first failure wins)."""
        result = self.results.get(report.nodeid)
        if result is None:
            result = self.results[report.nodeid] = CheckResult(report.nodeid, "", NOT_RUN, 0.0)
        result.duration_s += report.duration
        detail = dict(report.user_properties).get("detail")
        if detail:
            result.detail = str(detail)
        if result.outcome == "failed":
            return
        if report.failed:
            result.outcome, result.message = "failed", _reason(report)
        elif report.skipped:
            result.outcome, result.message = "skipped", _skip_reason(report)
        elif report.when == "call" and result.outcome == NOT_RUN:
            result.outcome = "passed"

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Remember each selected check's display name and docstring, in run order."""
        from smoke_tests.plugin import check_name

        for item in session.items:
            doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
            self.results[item.nodeid] = CheckResult(check_name(item), doc[0] if doc else "", NOT_RUN, 0.0)

    def ordered(self) -> list[CheckResult]:
        """Results in run order."""
        return list(self.results.values())


def _reason(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    for prefix in ("smoke_tests.client.CheckError: ", "smoke_tests.client.NotReadyError: ", "AssertionError: "):
        text = text.removeprefix(prefix)
    return " ".join(text.split())


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr or "")


def print_table(run: RunReport, console: Console) -> None:
    """The console summary: one row per check, then one line per failed check."""
    s = run.settings
    table = Table(title=f"gemma4-serve smoke: {s.base_url} (--server {s.server}, --level {s.level})")
    for column, justify in (("check", "left"), ("result", "left"), ("time", "right"), ("detail", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for check in run.checks:
        style = OUTCOME_STYLE.get(check.outcome, "")
        note = check.detail if check.outcome == "passed" else check.message
        if len(note) > TABLE_NOTE_CHARS:
            note = note[: TABLE_NOTE_CHARS - 3] + "..."
        table.add_row(escape(check.name), f"[{style}]{check.outcome}[/]", f"{check.duration_s:.2f} s", escape(note))
    console.print(table)
    not_run = f", {run.count(NOT_RUN)} not run (interrupted)" if run.count(NOT_RUN) else ""
    console.print(
        f"{run.count('passed')} passed, {run.count('failed')} failed, {run.count('skipped')} skipped{not_run} "
        f"in {run.duration_s:.1f} s"
    )
    for check in run.checks:
        if check.outcome == "failed":
            console.print(f"FAILED {check.name}: {check.message}", markup=False, highlight=False, soft_wrap=True)


def markdown(run: RunReport) -> str:
    """A Markdown summary for CI step summaries (GitHub's $GITHUB_STEP_SUMMARY and the like)."""
    s = run.settings
    icon = {"passed": "pass", "failed": "**FAIL**", "skipped": "skip", NOT_RUN: "not run"}
    lines = [
        f"### gemma4-serve smoke: {'passed' if run.exit_code == 0 else 'FAILED'}",
        "",
        f"`{s.base_url}`, `--server {s.server}`, `--level {s.level}`: {run.count('passed')} passed, "
        f"{run.count('failed')} failed, {run.count('skipped')} skipped in {run.duration_s:.1f} s",
        "",
        "| check | result | time | detail |",
        "|---|---|---:|---|",
    ]
    for c in run.checks:
        note = (c.detail if c.outcome == "passed" else c.message).replace("|", "\\|")
        lines.append(f"| `{c.name}` | {icon.get(c.outcome, c.outcome)} | {c.duration_s:.2f} s | {note} |")
    return "\n".join(lines) + "\n"


def write_json(run: RunReport, path: str) -> None:
    """Write the JSON report to ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(run.to_dict(), f, indent=2)
        f.write("\n")
