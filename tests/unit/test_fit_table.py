"""The fit table of docs/fit.md is the generator's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.planner.table import BEGIN, END, replace_block, table

REPO = Path(__file__).resolve().parents[2]


def test_the_fit_table_is_current() -> None:
    text = (REPO / "docs/fit.md").read_text()
    assert replace_block(text, table()) == text, "run `python -m deploy.planner.table --write`"


def test_table_has_every_class_and_the_refusal_threshold() -> None:
    t = table()
    for size in (8, 10, 12, 16, 24, 48, 80):
        assert f"| {size} GB (" in t
    assert "`gpu-10gb-ampere`" in t and "llama.cpp" in t


def test_replace_block_needs_the_markers() -> None:
    assert replace_block(f"a\n{BEGIN}\nold\n{END}\nb", "new") == f"a\n{BEGIN}\nnew\n{END}\nb"
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers", "x")


def test_the_docs_say_one_thing_about_8gb() -> None:
    """Issue 18, item 7: docs/engines.md's engine choice agrees with the fit table's (generated) 8 GB rows."""
    from deploy.planner.args import from_mapping
    from deploy.profiles import load_profile

    text = (REPO / "docs/engines.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 8 GB | **llama.cpp"))
    assert "do not fit" not in row  # the old claim the table contradicted
    ada, ampere = (from_mapping(load_profile(n)) for n in ("gpu-8gb", "gpu-8gb-ampere"))
    assert ada.cpu_offload_gb > 0 and ampere.cpu_offload_gb > 0 and "CPU offload" in row
    assert ada.max_model_len == ampere.max_model_len == 16384 and "a 16k context" in row
    assert ada.language_model_only and not ampere.language_model_only and "no images" in row
    assert "modelled, not measured" in row
