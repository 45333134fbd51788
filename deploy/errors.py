"""The one root of every error the bundle's tools raise on purpose, and the exit code each one means.

An error of the bundle always carries a message that names the problem and the fix. ``python -m deploy``
prints it as one ``error: ...`` line and exits with the class's code, never with a traceback:

- 2 (:class:`UsageError`): the input is wrong (a flag, a profile, a file, a value); nothing was changed.
- 1 (:class:`DeployError` itself): the input was fine but the world was not (a server did not answer, a
  download failed, a checkpoint does not verify).

Each subpackage keeps its own subclass (``FitError``, ``ProbeError`` ...) so callers can catch narrowly;
most also derive from the built-in exception they used to be, so existing ``except ValueError`` still works.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base of the bundle's errors: exit code 1 (something outside the input failed)."""

    exit_code: int = 1


class UsageError(DeployError):
    """The input is wrong and the message says how to fix it: exit code 2."""

    exit_code = 2
