"""Simulator reports on the dashboard: the PNG plots and JSON summaries `corral simulate` writes.

The directory is configured (`CORRAL_SIM_REPORTS`, see `corral.web.settings`); only `.png` and
`.json` files under it are listed or served, and a requested name must resolve inside it, so a
crafted name (`../../etc/passwd`, a symlink out) is a 404, never a file from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from corral.web.models import ReportFile

__all__ = ["KINDS", "find_report", "list_reports"]

KINDS = {".png": "png", ".json": "json"}
MAX_FILES = 200
MAX_DEPTH = 3


def list_reports(root: Path | None) -> list[ReportFile]:
    """Newest first; [] when the directory is unset or missing."""
    if root is None or not root.is_dir():
        return []
    base = root.resolve()
    found: list[ReportFile] = []
    for path in base.rglob("*"):
        rel = path.relative_to(base)
        if len(rel.parts) > MAX_DEPTH or path.suffix.lower() not in KINDS:
            continue
        if not path.is_file() or not path.resolve().is_relative_to(base):
            continue
        st = path.stat()
        found.append(ReportFile(name=rel.as_posix(), kind=KINDS[path.suffix.lower()],
                                size=st.st_size, modified_at=st.st_mtime))
    found.sort(key=lambda r: (-r.modified_at, r.name))
    return found[:MAX_FILES]


def find_report(root: Path | None, name: str) -> Path | None:
    """The file for `name`, or None when it is not a listed kind or lies outside `root`."""
    if root is None or not root.is_dir() or "\x00" in name:
        return None
    base = root.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base) or path.suffix.lower() not in KINDS or not path.is_file():
        return None
    return path
