"""Which uploaded workdir archives to delete: a bounded cache, on the server and on each agent.

Archives are content-addressed (`<root>/<hex>.tar`, `corral.backends.workdir`): without a bound
every upload stays forever. Each holder prunes its own folder when it grows (the server after an
upload, an agent after a download), by these rules, in this order:

1. never an archive that a workload not yet ended references (`in_use`: pending, scheduled,
   starting, running or preempted-to-be-requeued on the server; launched and not released on
   an agent): its next launch would fail;
2. never one used in the last `min_age_s` (1 h): an upload is stored before the submission
   that references it, so a fresh archive may be in use without the store saying so yet;
3. every other archive unused for `max_age_s` (30 days);
4. then, while the folder holds more than `max_bytes` (20 GiB), the least recently used first.

"Used" is the file's modification time, touched whenever the archive is asked for (the
submission's "have you got it?", an agent's download, a launch from the agent's copy): least
recently used, as SkyPilot's and Docker's build caches evict. `.part` files older than
`min_age_s` are leftovers of a cut write and go too. `plan` decides (pure, tested by
table); `prune` reads the folder, asks `plan`, deletes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["CacheLimits", "Entry", "plan", "prune", "touch"]

GiB: Final = 1024**3
ARCHIVE_SUFFIX: Final = ".tar"


@dataclass(frozen=True)
class CacheLimits:
    max_bytes: int = 20 * GiB
    max_age_s: float = 30 * 86400.0
    min_age_s: float = 3600.0


@dataclass(frozen=True)
class Entry:
    digest: str  # sha256:<hex>
    size: int
    used_at: float


def plan(entries: Collection[Entry], in_use: Collection[str], limits: CacheLimits,
         now: float) -> list[str]:
    """The digests to delete (module docstring), oldest use first.

    >>> e = [Entry("sha256:a", 5, 0.0), Entry("sha256:b", 5, 90.0), Entry("sha256:c", 5, 99.0)]
    >>> plan(e, {"sha256:a"}, CacheLimits(max_bytes=8, max_age_s=1e9, min_age_s=5), 100.0)
    ['sha256:b']
    """
    removable = sorted((e for e in entries if e.digest not in in_use
                        and now - e.used_at >= limits.min_age_s), key=lambda e: e.used_at)
    total = sum(e.size for e in entries)
    out = []
    for e in removable:
        if now - e.used_at >= limits.max_age_s or total > limits.max_bytes:
            out.append(e.digest)
            total -= e.size
    return out


def _entries(root: Path) -> list[Entry]:
    out = []
    for path in root.glob(f"*{ARCHIVE_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            out.append(Entry("sha256:" + path.name.removesuffix(ARCHIVE_SUFFIX), st.st_size,
                             st.st_mtime))
    return out


def prune(root: Path, in_use: Collection[str], limits: CacheLimits | None = None,
          now: float | None = None) -> list[str]:
    """Delete what `plan` says from `root` (and stale `.part` files); the digests deleted."""
    limits = limits or CacheLimits()
    now = time.time() if now is None else now
    if not root.is_dir():
        return []
    gone = plan(_entries(root), set(in_use), limits, now)
    for digest in gone:
        with contextlib.suppress(FileNotFoundError):
            (root / (digest.removeprefix("sha256:") + ARCHIVE_SUFFIX)).unlink()
    for part in root.glob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            if now - part.stat().st_mtime >= limits.min_age_s:
                part.unlink()
    return gone


def touch(path: Path) -> None:
    """Mark an archive used now (its modification time: module docstring)."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)
