"""Which profiles the real-engine tier serves in this run (``ENGINE_PROFILES``)."""

from __future__ import annotations

import datetime as dt
import os

from deploy.profiles import list_profiles


def selected_profiles(value: str | None = None, today: dt.date | None = None) -> list[str]:
    """``rotate`` (default): one profile, the date's turn in the sorted list, so a fortnight covers them all;
    ``all``: every profile; otherwise a comma-separated list of profile names (unknown names are an error)."""
    value = (os.environ.get("ENGINE_PROFILES", "rotate") if value is None else value).strip() or "rotate"
    profiles = sorted(list_profiles())
    if value == "all":
        return profiles
    if value == "rotate":
        return [profiles[(today or dt.date.today()).toordinal() % len(profiles)]]
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(profiles))
    if unknown:
        raise ValueError(f"ENGINE_PROFILES names unknown profiles {unknown}; known: {', '.join(profiles)}")
    return names
