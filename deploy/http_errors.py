"""One wording for a failed HTTP request, shared by every httpx client of the bundle.

The health probe (:mod:`deploy.launcher.probe`), the quality client (:mod:`deploy.quality.sources`) and the
smoke suite (``smoke_tests/client.py``) each wrap this line in their own error class and add their own advice.
The bench client speaks aiohttp (docs/benchmarks.md says why) and words its errors the same way by hand.

This module imports nothing but httpx and the standard library: the smoke image copies it (with the empty
``deploy/__init__.py``) beside ``smoke_tests/`` and nothing else of deploy/ (tests/unit/test_layers.py).
"""

from __future__ import annotations

import httpx

__all__ = ["CONNECT", "OTHER", "TIMEOUT", "describe", "failure_kind"]

CONNECT, TIMEOUT, OTHER = "connect", "timeout", "other"


def failure_kind(exc: httpx.HTTPError) -> str:
    """:data:`CONNECT` (nothing listens, or refused), :data:`TIMEOUT` (no answer in time) or :data:`OTHER`.

    A connect timeout counts as a timeout: something may be listening but too busy to accept.
    """
    if isinstance(exc, httpx.ConnectError):
        return CONNECT
    if isinstance(exc, httpx.TimeoutException):
        return TIMEOUT
    return OTHER


def describe(
    exc: httpx.HTTPError,
    where: str,
    *,
    target: str = "",
    within: str = "",
    advice: dict[str, str] | None = None,
) -> str:
    """One line saying what failed, then ``; advice[kind]`` when there is advice for that kind.

    The line is ``{where}: cannot connect[ to {target}] ({exc})``, ``{where}: no answer within {within}`` (or
    ``in time``), or ``{where}: {ExceptionType}: {exc}``.

    ``where`` names the request (``GET http://host:8000/v1/models``), ``within`` the time limit as the user set
    it (``30 s (--timeout)``), ``advice`` what to do per :func:`failure_kind` (it follows a ``; ``).
    """
    kind = failure_kind(exc)
    if kind == CONNECT:
        line = f"{where}: cannot connect{f' to {target}' if target else ''} ({exc})"
    elif kind == TIMEOUT:
        line = f"{where}: no answer {f'within {within}' if within else 'in time'}"
    else:
        line = f"{where}: {type(exc).__name__}: {exc}"
    hint = (advice or {}).get(kind)
    return f"{line}; {hint}" if hint else line
