"""Errors raised by the real-parts test harnesses.

HarnessError
 ├── HarnessUnavailable   the thing cannot be started here: binaries or a Python package are
 │                        absent. Test suites turn this into a skip that names what to install.
 └── HarnessStartFailed   the binaries are there but the server did not come up (or did not
                          behave) in time. This is a real failure: tests must fail, not skip.
                          The message carries the tail of the server's log.
"""

from __future__ import annotations

__all__ = ["HarnessError", "HarnessStartFailed", "HarnessUnavailable"]


class HarnessError(RuntimeError):
    """Base class of every harness error."""


class HarnessUnavailable(HarnessError):
    """A prerequisite (a binary, a Python package) is absent; the message says how to get it."""


class HarnessStartFailed(HarnessError):
    """A server that should work did not start or answer in time; the message has its log tail."""
