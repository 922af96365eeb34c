"""Workdir uploads from the client: pack a directory, upload it once, name it by its digest.

    corral submit FILE  ->  GET /v1/workdirs (does this server take uploads?)
                        ->  pack workdir (tar.gz, the same bytes for the same tree)
                        ->  GET /v1/workdirs/sha256:<hex>: there already? then nothing to send
                        ->  PUT /v1/workdirs/sha256:<hex>  (at most 100 MiB unpacked)
                        ->  the spec's workdir becomes sha256:<hex>

The archive is deterministic (entries sorted, times, owners and gzip's own time zeroed), so a
rerun of an unchanged tree has the same digest and uploads nothing (content addressing, as
SkyPilot's file mounts and Docker's layers skip what the far side holds). Symbolic links stay
links. Standard library only: a client install needs nothing more.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from corral.sdk.client import Client

__all__ = ["MAX_WORKDIR_BYTES", "WorkdirTooBig", "pack", "upload", "uploads_wanted"]

MAX_WORKDIR_BYTES: Final = 100 * 1024 * 1024  # as corral.backends.workdir


class WorkdirTooBig(ValueError):
    """The directory holds more than the server takes."""


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def pack(path: Path, limit: int = MAX_WORKDIR_BYTES) -> tuple[bytes, str]:
    """The directory as a gzipped tar and its digest (`sha256:<hex>`). Raises WorkdirTooBig
    past `limit` bytes of files, NotADirectoryError when it is not a directory."""
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    raw, total = io.BytesIO(), 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted([*dirs, *files]):
                full = Path(root) / name
                if name in files and not full.is_symlink():
                    total += full.stat().st_size
                    if total > limit:
                        raise WorkdirTooBig(f"{path} holds more than {limit // 2**20} MiB: "
                                            "keep data out of workdir (a volume, or "
                                            "checkpoint_dir) or point it at the code alone")
                tar.add(full, arcname=str(full.relative_to(path)), recursive=False,
                        filter=_normalized)
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def uploads_wanted(client: Client) -> bool:
    """Whether this server's workers need workdirs uploaded (its backend's hosts do not see
    this machine's files); False from a server that predates uploads."""
    from corral.sdk.errors import NotFound

    try:
        answer: dict[str, Any] = client._call("GET", "/v1/workdirs").json()
    except NotFound:
        return False
    return bool(answer.get("upload"))


def upload(client: Client, path: Path) -> str:
    """Pack and upload `path` unless the server has it already; its digest."""
    from corral.sdk.errors import NotFound

    data, digest = pack(path)
    try:
        client._call("GET", f"/v1/workdirs/{digest}")
        return digest  # already there: a rerun sends nothing
    except NotFound:
        pass
    client._call("PUT", f"/v1/workdirs/{digest}", content=data,
                 headers={"Content-Type": "application/gzip"})
    return digest
