"""`workdir:` on a backend whose workers see the control plane's files: a copy per attempt.

The spec names a directory; at each launch it is copied into the attempt's directory (as
SkyPilot syncs its workdir to every node before `setup`), and the worker's command runs in the
copy unless the spec sets `working_dir`. A copy, not the directory itself: the job may write
beside its sources without touching the user's tree, and an attempt runs the files as they were
when it started. Symbolic links are copied as links (a link to a dataset stays a link, never a
copy of the dataset), and the size is checked before anything is copied: more than
`MAX_WORKDIR_BYTES` is refused naming the field, since it would be copied again on every
launch.

Uploaded workdirs (issue 13): where the workers do not see the submitter's files (the agent
backend's hosts), `corral submit FILE` packs the directory into a gzipped tar, content-addressed
by its SHA-256, uploads it once (`PUT /v1/workdirs/sha256:<hex>`; a rerun of the same tree
finds it there and uploads nothing) and submits `workdir: sha256:<hex>`. The server keeps
archives in `<data dir>/workdirs/` (`WorkdirArchives`); at each launch the worker's host fetches
the archive (the agent: `GET /agent/v1/workdirs/...`, cached by digest in its data dir) and
unpacks it into the attempt's directory, as a copy is made above. Archives are checked before
they are stored and again when unpacked (regular files, directories and relative symbolic links
only, no absolute or `..` paths, at most `MAX_WORKDIR_BYTES` unpacked, tarfile's `data` filter),
so an archive can never write outside the attempt's directory. Slurm, Ray and Kubernetes still
refuse `workdir` at submission.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from corral.backends.errors import InvalidLaunchSpec
from corral.backends.workdir_cache import CacheLimits, prune, touch

__all__ = ["ARCHIVE_PREFIX", "MAX_ARCHIVE_MEMBERS", "MAX_WORKDIR_BYTES", "WORKDIR_COPY",
           "ArchiveSource", "WorkdirArchives", "check_archive", "check_workdir", "copy_workdir",
           "is_archive", "unpack_workdir", "workdir_bytes"]

WORKDIR_COPY: Final = "workdir"  # the copy's name in the attempt's directory
#: the most a workdir may hold (its files' sizes summed): it is copied on every launch
MAX_WORKDIR_BYTES: Final = 100 * 1024 * 1024
MAX_ARCHIVE_MEMBERS: Final = 100_000
ARCHIVE_PREFIX: Final = "sha256:"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: digest -> the archive's path on this host (fetched first where it is not here)
ArchiveSource = Callable[[str], Path]


def is_archive(ref: str) -> bool:
    """Whether a spec's workdir names an uploaded archive (`sha256:<hex>`), not a path."""
    return _DIGEST.fullmatch(ref) is not None


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
    """Raise InvalidLaunchSpec naming `workdir` when `path` is no directory here or too big
    (an uploaded archive is checked when it is stored and when it is unpacked)."""
    if is_archive(path):
        return
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


def copy_workdir(src: str, attempt_dir: Path, owner: tuple[int, int] | None = None,
                 archives: ArchiveSource | None = None) -> Path:
    """Copy `src` into `attempt_dir/workdir` (checked first); the copy's path. `owner`: the
    worker's (uid, gid), who then owns the copy (a worker user must be able to write there).
    An uploaded archive (`sha256:<hex>`) is unpacked there instead, from `archives(digest)`."""
    dest = attempt_dir / WORKDIR_COPY
    if is_archive(src):
        if archives is None:
            raise InvalidLaunchSpec("workdir", f"{src} is an uploaded archive and this host has "
                                    "no way to fetch it: submit to a pool that takes uploads")
        unpack_workdir(archives(src), dest)
    else:
        check_workdir(src)
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


def check_archive(data: bytes, limit: int = MAX_WORKDIR_BYTES) -> None:
    """Raise InvalidLaunchSpec naming `workdir` unless `data` is a gzipped (or plain) tar of
    regular files, directories and relative links, with relative paths that stay inside, at
    most `limit` bytes unpacked and `MAX_ARCHIVE_MEMBERS` entries."""
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for n, m in enumerate(tar):
                if n >= MAX_ARCHIVE_MEMBERS:
                    raise InvalidLaunchSpec("workdir", f"the archive has more than "
                                            f"{MAX_ARCHIVE_MEMBERS} entries")
                _check_member(m)
                total += m.size if m.isfile() else 0
                if total > limit:
                    raise InvalidLaunchSpec("workdir", f"the archive unpacks to more than "
                                            f"{limit // 2**20} MiB: keep data out of workdir")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise InvalidLaunchSpec("workdir", f"not a tar archive ({e}): upload what "
                                "`corral submit` packs") from None


def _check_member(m: tarfile.TarInfo) -> None:
    name = m.name
    if name.startswith("/") or ".." in Path(name).parts:
        raise InvalidLaunchSpec("workdir", f"archive entry {name!r} points outside the workdir")
    if not (m.isfile() or m.isdir() or m.issym()):
        raise InvalidLaunchSpec("workdir", f"archive entry {name!r} is not a file, directory "
                                "or symbolic link")
    if m.issym() and (m.linkname.startswith("/") or ".." in Path(m.linkname).parts):
        # an absolute link (a dataset on the node) is kept by a copy, but unpacking through one
        # could write outside the workdir: tarfile's data filter refuses it, so say so now
        raise InvalidLaunchSpec("workdir", f"archive entry {name!r} links outside the workdir "
                                f"({m.linkname!r}): a link to data belongs in volumes")


def unpack_workdir(archive: Path, dest: Path) -> Path:
    """Unpack a stored archive into `dest` (replaced if there: a launch retried)."""
    try:
        data = archive.read_bytes()
    except OSError as e:
        raise InvalidLaunchSpec("workdir", f"cannot read the uploaded archive: {e}") from e
    check_archive(data)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise InvalidLaunchSpec("workdir", f"cannot unpack the uploaded archive: {e}") from e
    return dest


class WorkdirArchives:
    """Uploaded workdirs on the server: `<root>/<hex>.tar` by content digest, a bounded cache
    (`corral.backends.workdir_cache`: pruned after each new upload, never what is in use)."""

    def __init__(self, root: Path, limits: CacheLimits | None = None) -> None:
        self.root, self.limits = root, limits or CacheLimits()

    def path(self, digest: str) -> Path:
        if not is_archive(digest):
            raise ValueError(f"not an archive digest: {digest[:80]!r}")
        return self.root / f"{digest.removeprefix(ARCHIVE_PREFIX)}.tar"

    def has(self, digest: str) -> bool:
        """Whether it is stored; asking marks it used (a rerun's check, an agent's fetch)."""
        path = self.path(digest)
        if not path.is_file():
            return False
        touch(path)
        return True

    def prune(self, in_use: set[str], now: float | None = None) -> list[str]:
        """Delete what the cache's limits say may go, never a digest in `in_use`."""
        return prune(self.root, in_use, self.limits, now)

    def put(self, digest: str, data: bytes) -> bool:
        """Store `data` under `digest` once it is checked; True when it was new. Raises
        InvalidLaunchSpec naming `workdir` when it does not match or is no safe archive."""
        actual = ARCHIVE_PREFIX + hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise InvalidLaunchSpec("workdir", f"the body's SHA-256 is {actual}, not {digest}: "
                                    "the upload was cut short or altered; send it again")
        if self.has(digest):
            return False
        check_archive(data)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path(digest))  # whole or absent: a reader never sees half of it
        return True
