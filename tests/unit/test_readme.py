"""README.md's promises about tests and documents hold: every test its argument table names exists, every
document it links exists, and the serving arguments that matter most each have a row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
HEADING = "## Where each argument is set, how to override it, which test guards it"
ARGUMENTS = (
    "model",
    "max-model-len",
    "max-num-seqs",
    "gpu-memory-utilization",
    "kv-cache-dtype",
    "cpu-offload-gb",
    "limit-mm-per-prompt",
    "quantization",
    "api-key",
    "port",
)
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def argument_rows() -> dict[str, str]:
    """The argument table's rows, by the argument(s) in their first cell."""
    section = README.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {line.split("|")[1].strip(): line for line in rows}


def test_every_important_argument_has_a_row_naming_a_test() -> None:
    rows = argument_rows()
    for argument in ARGUMENTS:
        row = next((r for cell, r in rows.items() if f"`{argument}`" in cell), None)
        assert row is not None, f"README's argument table has no row for {argument}"
        assert TEST_REF.search(row.split("|")[4]), f"the {argument} row names no test file::test"


@pytest.mark.parametrize("ref", sorted(set(TEST_REF.findall(README))), ids=lambda r: f"{r[0]}::{r[1]}")
def test_each_named_test_exists(ref: tuple[str, str]) -> None:
    path, name = ref
    assert (REPO / path).is_file(), f"README names {path}, which does not exist"
    tree = ast.parse((REPO / path).read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert name in defined, f"README names {path}::{name}, which {path} does not define"


@pytest.mark.parametrize("link", sorted(set(re.findall(r"\]\(((?:docs|helm)/[^)#]+)", README))))
def test_each_linked_document_exists(link: str) -> None:
    assert (REPO / link).exists(), f"README links {link}, which does not exist"


def test_every_doc_is_in_the_index() -> None:
    missing = [p.name for p in sorted((REPO / "docs").glob("*.md")) if f"(docs/{p.name})" not in README]
    assert not missing, f"docs not listed in README's documentation index: {missing}"
