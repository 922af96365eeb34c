"""`workdir:` on a backend whose workers see the control plane's files: a copy per attempt.

The spec names a directory; at each launch it is copied into the attempt's directory (as
SkyPilot syncs its workdir to every node before `setup`), and the worker's command runs in the
copy unless the spec sets `working_dir`. A copy, not the directory itself: the job may write
beside its sources without touching the user's tree, and an attempt runs the files as they were
when it started. Symbolic links are copied as links (a link to a dataset stays a link, never a
copy of the dataset), and the size is checked before anything is copied: more than
`MAX_WORKDIR_BYTES` is refused naming the field, since it would be copied again on every
launch. Backends whose workers do not see these files (Slurm without a shared path, agents,
Kubernetes) refuse `workdir` at submission until it is uploaded through the control plane.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

from corral.backends.errors import InvalidLaunchSpec

__all__ = ["MAX_WORKDIR_BYTES", "WORKDIR_COPY", "check_workdir", "copy_workdir",
           "workdir_bytes"]

WORKDIR_COPY: Final = "workdir"  # the copy's name in the attempt's directory
#: the most a workdir may hold (its files' sizes summed): it is copied on every launch
MAX_WORKDIR_BYTES: Final = 100 * 1024 * 1024


def workdir_bytes(path: Path, limit: int = MAX_WORKDIR_BYTES) -> int:
    """The sizes of the regular files under `path` summed (links not followed), stopping as
    soon as the sum passes `limit` (a huge tree is not walked to the end to be refused)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
            if total > limit:
                return total
    return total


def check_workdir(path: str, limit: int = MAX_WORKDIR_BYTES) -> None:
    """Raise InvalidLaunchSpec naming `workdir` when `path` is no directory here or too big."""
    where = Path(path)
    if not where.is_dir():
        raise InvalidLaunchSpec("workdir", f"{path!r} is not a directory on this host: create "
                                "it or fix the path")
    size = workdir_bytes(where, limit)
    if size > limit:
        raise InvalidLaunchSpec(
            "workdir", f"{path!r} holds more than {limit // 2**20} MiB (it is copied on every "
            "launch): keep data out of it (a volume, or checkpoint_dir) or point workdir at the "
            "code alone")


def copy_workdir(src: str, attempt_dir: Path, owner: tuple[int, int] | None = None) -> Path:
    """Copy `src` into `attempt_dir/workdir` (checked first); the copy's path. `owner`: the
    worker's (uid, gid), who then owns the copy (a worker user must be able to write there)."""
    check_workdir(src)
    dest = attempt_dir / WORKDIR_COPY
    if dest.exists():  # a launch retried after a crash: copy afresh
        shutil.rmtree(dest)
    try:
        shutil.copytree(src, dest, symlinks=True)
    except (OSError, shutil.Error) as e:
        raise InvalidLaunchSpec("workdir", f"cannot copy {src!r}: {e}") from e
    if owner is not None:
        for root, dirs, files in os.walk(dest):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), *owner)
        os.chown(dest, *owner)
    return dest
