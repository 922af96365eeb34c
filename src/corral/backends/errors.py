"""Errors raised by backends.

Expected outcomes are not errors: a worker that exits non-zero, a node that disappears, a process
that finished while the control plane was down are all reported by ``Backend.poll()`` as
``WorkerStatus`` values. Exceptions mean the request itself was wrong or the engine is broken::

    BackendError                    base of everything a backend raises on purpose
    ├── InvalidRequest              (also ValueError) a bad argument; names the field and the fix
    │   └── InvalidLaunchSpec       the launch spec breaks the contract
    ├── LaunchError                 the gang could not be started; nothing of it is left running
    │   └── LaunchConflict          this (workload, attempt) was already launched with another spec
    ├── UnknownAttempt              (also LookupError) no such (workload, attempt) / worker here
    ├── AttemptStillRunning         release() of an attempt whose workers have not all ended
    └── BackendUnavailable          the engine cannot be reached (a Ray head, slurmctld, an API server)

Every message says what is wrong and how to fix it, so the API layer can show it as is.
"""

from __future__ import annotations

__all__ = [
    "AttemptStillRunning",
    "BackendError",
    "BackendUnavailable",
    "InvalidLaunchSpec",
    "InvalidRequest",
    "LaunchConflict",
    "LaunchError",
    "UnknownAttempt",
]


class BackendError(Exception):
    """Base class of every error a backend raises on purpose."""


class InvalidRequest(BackendError, ValueError):
    """A bad argument. `field` names it; the message says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidLaunchSpec(InvalidRequest):
    """The launch spec breaks the contract (a field of `LaunchSpec`, or the backend's own limits)."""


class LaunchError(BackendError):
    """The gang could not be started. The backend has stopped whatever part of it had started."""


class LaunchConflict(LaunchError):
    """The same (workload, attempt) was launched before with a different spec.

    A relaunch with changes must use a new attempt number.
    """


class UnknownAttempt(BackendError, LookupError):
    """No such workload attempt (or worker) is known to this backend."""


class AttemptStillRunning(BackendError):
    """release() was called while some worker of the attempt had not ended; stop it first."""


class BackendUnavailable(BackendError):
    """The engine behind the backend cannot be reached; the call may succeed if retried later."""
