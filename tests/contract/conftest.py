"""Contract-test plumbing: the SGLang parser checks run only where its venv is asked for.

SGLang's parser needs a 5.8 GB venv that takes about 90 s to build, more than `make test` should add on
every clean machine; `make test-engines` builds it and sets SGLANG_PYTHON. Without it the `sglang` tests
are deselected (not skipped) and the run's header says so, so nobody mistakes the run for a full one.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the `sglang` tests unless SGLANG_PYTHON points at the SGLang venv."""
    if os.environ.get("SGLANG_PYTHON"):
        return
    chosen = [item for item in items if item.get_closest_marker("sglang") is None]
    dropped = [item for item in items if item.get_closest_marker("sglang") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = chosen
        config._gemma4_sglang_deselected = len(dropped)  # read by the report header below


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    """One line in the output when the SGLang checks were left out."""
    count = getattr(config, "_gemma4_sglang_deselected", 0)
    if count:
        return f"{count} SGLang parser checks deselected: `make test-engines` runs them"
    return None
