"""The README's fit table is the generator's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.fit_table import BEGIN, END, replace_block, table

REPO = Path(__file__).resolve().parents[2]


def test_readme_table_is_current() -> None:
    text = (REPO / "README.md").read_text()
    assert replace_block(text, table()) == text, "run `python -m deploy.fit_table --write`"


def test_table_has_every_class_and_the_refusal_threshold() -> None:
    t = table()
    for size in (8, 10, 12, 16, 24, 48, 80):
        assert f"| {size} GB (" in t
    assert "`gpu-10gb-ampere`" in t and "llama.cpp" in t


def test_replace_block_needs_the_markers() -> None:
    assert replace_block(f"a\n{BEGIN}\nold\n{END}\nb", "new") == f"a\n{BEGIN}\nnew\n{END}\nb"
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers", "x")
