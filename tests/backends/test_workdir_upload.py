"""Uploaded workdirs: the client's archive is the same bytes for the same tree (so a rerun
uploads nothing), the server refuses an archive that could write outside its directory or is
too big, and one that passes unpacks into the attempt's directory with its links kept."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from corral.backends.errors import InvalidLaunchSpec
from corral.backends.workdir import (
    WorkdirArchives,
    check_archive,
    copy_workdir,
    is_archive,
    unpack_workdir,
)
from corral.sdk.workdirs import WorkdirTooBig, pack


def _tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    os.symlink("pkg/mod.py", root / "link.py")
    return root


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_the_same_tree_packs_to_the_same_digest(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a")
    data, digest = pack(a)
    os.utime(a / "train.py", (1, 1))  # a touched file with the same bytes: the same archive
    assert pack(a) == (data, digest)
    assert is_archive(digest) and digest == "sha256:" + hashlib.sha256(data).hexdigest()
    (a / "train.py").write_text("print('changed')\n")
    assert pack(a)[1] != digest


def test_an_archive_unpacks_into_the_attempt_with_links_kept(tmp_path: Path) -> None:
    data, digest = pack(_tree(tmp_path / "src"))
    archives = WorkdirArchives(tmp_path / "store")
    assert archives.put(digest, data) is True
    assert archives.put(digest, data) is False  # stored once
    dest = copy_workdir(digest, tmp_path / "attempt", archives=archives.path)
    assert (dest / "train.py").read_text() == "print('hi')\n"
    assert os.readlink(dest / "link.py") == "pkg/mod.py"
    assert (dest / "link.py").read_text() == "X = 1\n"
    unpack_workdir(archives.path(digest), dest)  # a launch retried: unpacked afresh
    assert sorted(p.name for p in dest.iterdir()) == ["link.py", "pkg", "train.py"]


@pytest.mark.parametrize(("member", "says"), [
    ((_entry("/etc/cron.d/x"), b"x"), "outside"),
    ((_entry("../../escape"), b"x"), "outside"),
    ((_entry("dev", tarfile.CHRTYPE), b""), "not a file"),
    ((_entry("fifo", tarfile.FIFOTYPE), b""), "not a file"),
    ((_entry("hard", tarfile.LNKTYPE, "train.py"), b""), "not a file"),
    ((_entry("data", tarfile.SYMTYPE, "/datasets"), b""), "links outside"),
    ((_entry("up", tarfile.SYMTYPE, "../x"), b""), "links outside"),
], ids=["absolute", "dotdot", "device", "fifo", "hardlink", "abs-link", "up-link"])
def test_an_unsafe_archive_is_refused_naming_workdir(member: tuple[tarfile.TarInfo, bytes],
                                                    says: str, tmp_path: Path) -> None:
    data = _tar(member)
    with pytest.raises(InvalidLaunchSpec, match=says) as e:
        check_archive(data)
    assert e.value.field == "workdir"
    archives = WorkdirArchives(tmp_path)
    with pytest.raises(InvalidLaunchSpec):
        archives.put("sha256:" + hashlib.sha256(data).hexdigest(), data)
    assert list(tmp_path.iterdir()) == []  # nothing stored


def test_too_big_is_refused_when_packed_and_when_stored(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    (src / "blob").write_bytes(b"\0" * 4096)
    with pytest.raises(WorkdirTooBig, match="MiB"):
        pack(src, limit=1024)
    data, _ = pack(src)
    with pytest.raises(InvalidLaunchSpec, match="unpacks to more than"):
        check_archive(data, limit=1024)


def test_a_body_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    data, digest = pack(_tree(tmp_path / "src"))
    with pytest.raises(InvalidLaunchSpec, match="SHA-256"):
        WorkdirArchives(tmp_path / "store").put(digest, data + b"x")
    with pytest.raises(InvalidLaunchSpec, match="not a tar"):
        check_archive(b"not a tar at all")


def test_an_archive_without_a_source_is_refused_at_launch(tmp_path: Path) -> None:
    with pytest.raises(InvalidLaunchSpec, match="no way to fetch"):
        copy_workdir("sha256:" + "0" * 64, tmp_path)
