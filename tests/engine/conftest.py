"""The real-engine tier: real vLLM 0.21.0 (CPU build) serving the tiny Gemma 4 through the launcher.

Servers come from the fixtures in tests/fixtures/vllm_plugin.py. Two environment variables size the tier
(``make test`` leaves both at their defaults, ``make test-engine`` raises them):

- ``ENGINE_PROFILES``: which profiles test_profiles.py serves (default ``rotate``: one a day; ``all``).
- ``ENGINE_SMOKE_RUNS``: how often the smoke suite runs against each fixed server (default 3; 30).
"""

from __future__ import annotations

import pytest

from tests.engine.selection import selected_profiles
from tests.engine.smoke import smoke_runs


def pytest_report_header(config: pytest.Config) -> str:
    """Say which profiles this run serves for real, so a rotating choice is never a surprise."""
    profiles = selected_profiles()
    how = "rotating by date; ENGINE_PROFILES=all (make test-engine) serves every one"
    return f"real vLLM tier: profiles {', '.join(profiles)} ({how}); smoke suite {smoke_runs()}x per fixed server"
