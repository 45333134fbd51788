"""Read sample values from a Prometheus text exposition (vLLM's ``/metrics``); the one parser the tools share.

Used by ``deploy drain`` (the in-flight gauges) and ``deploy bench`` (prefix-cache counters, the TTFT
histogram). Only unlabelled-name matching and summing over label sets is needed, so this stays a small
regular expression over the text format rather than a dependency in the slim images.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(?P<value>\S+)", re.MULTILINE)


def sample_sums(text: str, names: Iterable[str]) -> dict[str, float]:
    """The value of each metric in ``names``, summed over its label sets; a name with no sample is left out."""
    wanted = set(names)
    found: dict[str, float] = {}
    for match in _SAMPLE.finditer(text):
        name = match.group("name")
        if name in wanted:
            found[name] = found.get(name, 0.0) + float(match.group("value"))
    return found
