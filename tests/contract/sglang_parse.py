"""Parse `python -m sglang.launch_server` argument lists with SGLang 0.5.11's own parser.

Runs inside the SGLang venv built by `scripts/bootstrap.sh sglang` (not the test runner's venv), so it
imports nothing from this project. Input on stdin: a JSON list of ``{"source", "argv"}`` cases, ``argv``
being what follows ``python -m sglang.launch_server``. Output on stdout: a JSON list of
``{"source", "ok", "error", "parsed"}`` in the same order. ``--list-options`` prints the parser's option
strings; ``--self-check`` proves the parser accepts a good line and rejects a bad one.

The parser is built exactly as ``sglang.srt.server_args.prepare_server_args`` builds it. ``ServerArgs``
itself is not constructed: its ``__post_init__`` probes for a GPU, which these machines do not have.
As with vLLM, an abbreviation of an option is rejected: argparse would accept it as a prefix.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    """SGLang's server parser, as ``prepare_server_args`` builds it."""
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="sglang serve", allow_abbrev=False)
    ServerArgs.add_cli_args(parser)
    return parser


def check_case(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """Parse one argument list; return ``{"ok", "error", "parsed"}``."""
    options = set(parser._option_string_actions)
    unknown = sorted({a.split("=", 1)[0] for a in argv if a.startswith("--") and a.split("=", 1)[0] not in options})
    if unknown:
        return {"ok": False, "error": "not an SGLang 0.5.11 option: " + ", ".join(unknown), "parsed": None}
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = parser.parse_args(argv)
    except SystemExit:
        return {"ok": False, "error": stderr.getvalue().strip().splitlines()[-1], "parsed": None}
    return {"ok": True, "error": None, "parsed": {k: repr(v) for k, v in sorted(vars(parsed).items())}}


def main() -> int:
    """Entry point; see the module docstring."""
    logging.disable(logging.WARNING)
    parser = build_parser()
    if "--list-options" in sys.argv:
        print("\n".join(sorted(parser._option_string_actions)))
        return 0
    if "--self-check" in sys.argv:
        good = check_case(parser, ["--model-path", "x", "--context-length", "32768"])
        bad = check_case(parser, ["--model-path", "x", "--context-lenght", "32768"])
        ok = good["ok"] and not bad["ok"]
        print("sglang parser self-check:", "ok" if ok else f"FAILED good={good} bad={bad}")
        return 0 if ok else 1
    cases = json.load(sys.stdin)
    results = [{"source": c["source"], **check_case(parser, c["argv"])} for c in cases]
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
