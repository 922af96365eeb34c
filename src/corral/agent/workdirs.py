"""Uploaded workdirs on an agent's host: fetched from the server once per digest, kept here.

    <data>/workdirs/<hex>.tar    the archive, as the server holds it (`GET /agent/v1/workdirs/`)

The local backend asks for an archive when it launches a worker whose spec names one
(`corral.backends.workdir.copy_workdir`) and unpacks it into the attempt's directory. A digest
names its content, so a cached file is never stale; a download is checked against the digest
before it is kept (a cut connection leaves no half file behind). The folder is a bounded cache
(`corral.backends.workdir_cache`), pruned after each download: never an archive an attempt
still launched here names (`in_use`), else unused for 30 days or least recently used over
20 GiB.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from corral.backends.errors import InvalidLaunchSpec
from corral.backends.workdir import ARCHIVE_PREFIX, MAX_WORKDIR_BYTES, is_archive
from corral.backends.workdir_cache import CacheLimits, prune, touch

__all__ = ["AgentWorkdirs"]

#: an archive is at most the upload's cap
MAX_DOWNLOAD_BYTES = MAX_WORKDIR_BYTES + 16 * 1024 * 1024


class AgentWorkdirs:
    def __init__(self, server: str, root: Path, credential: Callable[[], str],
                 timeout_s: float = 120.0, in_use: Callable[[], set[str]] = set,
                 limits: CacheLimits | None = None) -> None:
        self.server, self.root, self.credential, self.timeout_s = (
            server.rstrip("/"), root, credential, timeout_s)
        self.in_use, self.limits = in_use, limits or CacheLimits()

    def fetch(self, digest: str) -> Path:
        """The archive's path here, downloaded first when missing. Raises InvalidLaunchSpec
        naming `workdir` when the server does not have it or the bytes do not match."""
        if not is_archive(digest):
            raise InvalidLaunchSpec("workdir", f"not an archive digest: {digest[:80]!r}")
        path = self.root / f"{digest.removeprefix(ARCHIVE_PREFIX)}.tar"
        if path.is_file():
            touch(path)  # used: the cache keeps the recently used
            return path
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = self._download(digest)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        prune(self.root, self.in_use() | {digest}, self.limits)  # the cache grew
        return path

    def _download(self, digest: str) -> bytes:
        url = f"{self.server}/agent/v1/workdirs/{digest}"
        try:
            with httpx.stream("GET", url, timeout=self.timeout_s,
                              headers={"Authorization": f"Bearer {self.credential()}"}) as r:
                if r.status_code != 200:
                    raise InvalidLaunchSpec("workdir", f"the server has no uploaded workdir "
                                            f"{digest} (HTTP {r.status_code}): submit again "
                                            "with `corral submit FILE`, which uploads it")
                chunks, total = [], 0
                for chunk in r.iter_bytes():
                    total += len(chunk)
                    if total > MAX_DOWNLOAD_BYTES:
                        raise InvalidLaunchSpec("workdir", "the archive is larger than any "
                                                "upload may be")
                    chunks.append(chunk)
        except httpx.HTTPError as e:
            raise InvalidLaunchSpec("workdir", f"cannot fetch {digest} from the server: "
                                    f"{e}") from e
        data = b"".join(chunks)
        if ARCHIVE_PREFIX + hashlib.sha256(data).hexdigest() != digest:
            raise InvalidLaunchSpec("workdir", f"the download of {digest} does not match its "
                                    "digest: cut short or altered; the next launch tries again")
        return data
