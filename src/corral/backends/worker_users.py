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
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["PER_QUEUE", "SAME_USER", "WorkerIdentity", "WorkerUsers", "interpreter_problem",
           "queue_user_name", "unreachable_by_others"]

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


def interpreter_problem(python: str, users: WorkerUsers) -> str | None:
    """Why the workers' users could not run `python` (corral's interpreter, first on a worker's
    PATH, so a job's `python` is this one); None when they can.

    A named user is asked for real (`python -c pass` as that user, with its groups). Per-queue
    users are created on first use and belong to no group but their own, so only the "other"
    permission bits reach them: the interpreter, its standard library and site-packages must be
    readable by anyone. The classic miss: a venv linked to a Python under /root (0700), as
    pyenv installs it, where every job that runs `python` then fails with exit 126.
    """
    if users.mode == PER_QUEUE:
        blocked = unreachable_by_others(_interpreter_paths(python))
        if blocked is None:
            return None
        return (f"the per-queue worker users (corral-q-<queue>) cannot run {python}: {blocked}, "
                "so every job that runs `python` would fail with exit 126")
    who = users.for_queue("")
    try:
        done = subprocess.run([python, "-c", "pass"], user=who.uid, group=who.gid,
                              extra_groups=os.getgrouplist(who.name, who.gid), cwd="/",
                              env={"PATH": os.defpath}, capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"worker user {who.name!r} cannot run {python}: {e}"
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return f"worker user {who.name!r} cannot run {python}: {detail[0]}"
    return None


def _interpreter_paths(python: str) -> list[tuple[Path, bool]]:
    """(path, is the file itself needed executable) for what starting `python` reads (its
    libraries are known only when it is this interpreter)."""
    found = [(Path(python), True), (Path(os.path.realpath(python)), True)]
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        paths = sysconfig.get_paths()
        found += [(Path(paths[k]), False) for k in ("stdlib", "purelib") if k in paths]
    return found


def unreachable_by_others(paths: list[tuple[Path, bool]]) -> str | None:
    """The first of `paths` a user with no rights but "other" cannot reach, said with the
    folder or file in the way and its mode; None when all are reachable. A path that does not
    exist is skipped (nothing to read there)."""
    for path, executable in paths:
        if not path.exists():
            continue
        for folder in reversed(path.parents):
            if not _mode(folder) & stat.S_IXOTH:
                return _in_the_way(folder, path, "not searchable by other users")
        need = stat.S_IXOTH if executable or path.is_dir() else stat.S_IROTH
        if path.is_dir():
            need |= stat.S_IROTH
        if _mode(path) & need != need:
            return _in_the_way(path, path, "not readable by other users")
    return None


def _mode(path: Path) -> int:
    return os.stat(path).st_mode


def _in_the_way(blocker: Path, path: Path, why: str) -> str:
    mode = stat.S_IMODE(_mode(blocker))
    via = "" if blocker == path else f" (on the way to {path})"
    return f"{blocker} is {mode:04o}, {why}{via}"
