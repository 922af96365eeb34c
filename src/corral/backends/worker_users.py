"""Which OS user runs a worker of the local backend, so a job cannot read what corral keeps.

The local backend's runner (`local_runner`) stays with corral's own user; the worker it starts
runs as another one. When corral runs as root (`corral up` as a service), that is by default one
unprivileged system user per queue, `corral-q-<queue>`, created on first use with
`useradd --system` (no home, no login shell): a job then cannot read the admin token, the
database or any log (all 0600, corral's), nor signal or trace the jobs of another queue. A
single named user (`corral up --worker-user NAME`) isolates corral from the jobs, not the
queues from each other. Without root there is no other user to switch to: every worker runs
as corral itself, one trust domain (README, "Isolation").

A worker's log is opened by its runner and handed over as stdout and stderr, so the worker
writes it without being able to open it (or any other log) by path.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import subprocess
from dataclasses import dataclass
from typing import Final

__all__ = ["PER_QUEUE", "SAME_USER", "WorkerIdentity", "WorkerUsers", "queue_user_name"]

PER_QUEUE: Final = "per-queue"  # corral-q-<queue>, created on demand
SAME_USER: Final = "same"  # corral's own user: one trust domain
PREFIX: Final = "corral-q-"
_USER_MAX: Final = 32  # useradd's limit on a user name
_PLAIN = re.compile(r"[a-z0-9_-]{1,23}")


class WorkerUserError(RuntimeError):
    """The worker user does not exist and cannot be created (not root, no useradd...)."""


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    name: str
    uid: int
    gid: int

    def env(self) -> dict[str, str]:
        """What the worker's environment says about who it is (not corral's values)."""
        return {"USER": self.name, "LOGNAME": self.name, "HOME": pwd.getpwuid(self.uid).pw_dir}


def queue_user_name(queue: str) -> str:
    """corral-q-<queue> where that is a valid user name of at most 32 characters; else a
    shortened form with a hash, so two queues never share a user."""
    if _PLAIN.fullmatch(queue):
        return PREFIX + queue
    digest = hashlib.sha256(queue.encode()).hexdigest()[:8]
    plain = re.sub(r"[^a-z0-9_-]", "-", queue)[: _USER_MAX - len(PREFIX) - 9]
    return f"{PREFIX}{plain}-{digest}"


class WorkerUsers:
    """mode: PER_QUEUE, or the name of one existing user. Resolved users are cached."""

    def __init__(self, mode: str = PER_QUEUE) -> None:
        if os.geteuid() != 0:
            raise WorkerUserError(
                f"running workers as another user ({mode}) needs corral to run as root; "
                f"without root use --worker-user {SAME_USER}")
        self.mode = mode
        self._known: dict[str, WorkerIdentity] = {}

    def for_queue(self, queue: str) -> WorkerIdentity:
        name = queue_user_name(queue) if self.mode == PER_QUEUE else self.mode
        known = self._known.get(name)
        if known is None:
            known = self._known[name] = self._resolve(name, create=self.mode == PER_QUEUE)
        return known

    @staticmethod
    def _resolve(name: str, *, create: bool) -> WorkerIdentity:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            if not create:
                raise WorkerUserError(f"worker user {name!r} does not exist; create it "
                                      "(useradd --system) or choose another") from None
            _create(name)
            entry = pwd.getpwnam(name)
        if entry.pw_uid == 0:
            raise WorkerUserError(f"worker user {name!r} is root: that isolates nothing")
        return WorkerIdentity(name, entry.pw_uid, entry.pw_gid)


def _create(name: str) -> None:
    try:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             "--comment", "corral worker", name],
            check=True, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise WorkerUserError("useradd is not installed: cannot create worker users; "
                              "install it (package passwd) or pass --worker-user") from None
    except subprocess.CalledProcessError as e:
        try:  # another corral created it meanwhile (exit 9: the name is taken)
            pwd.getpwnam(name)
        except KeyError:
            raise WorkerUserError(f"useradd {name} failed: {e.stderr.strip()}") from None
