"""The bounded cache of uploaded workdir archives (`corral.backends.workdir_cache`): what is
in use or was just used is never deleted; the unused-for-too-long go; over the size limit the
least recently used go first. API-level (in use = named by a workload not ended):
tests/api/test_workdirs_api.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.backends.workdir_cache import CacheLimits, Entry, plan, prune

LIMITS = CacheLimits(max_bytes=100, max_age_s=1000.0, min_age_s=10.0)
NOW = 10_000.0


def _e(name: str, size: int, age: float) -> Entry:
    return Entry(f"sha256:{name}", size, NOW - age)


@pytest.mark.parametrize(("entries", "in_use", "gone"), [
    ([_e("a", 10, 50), _e("b", 10, 60)], set(), []),
    ([_e("a", 10, 2000), _e("b", 10, 60)], set(), ["a"]),
    ([_e("a", 10, 2000)], {"sha256:a"}, []),
    ([_e("a", 60, 300), _e("b", 60, 200), _e("c", 60, 100)], set(), ["a", "b"]),
    ([_e("a", 60, 300), _e("b", 60, 200), _e("c", 60, 100)], {"sha256:a"}, ["b", "c"]),
    ([_e("a", 200, 5), _e("b", 10, 50)], set(), ["b"]),
    ([_e("a", 200, 5)], set(), []),
    ([_e("a", 200, 2000)], {"sha256:a"}, []),
], ids=["under-limits", "aged-out", "in-use-aged", "lru-over-size", "lru-skips-in-use",
        "just-used-kept-over-size", "only-just-used", "in-use-over-everything"])
def test_what_the_cache_deletes(entries: list[Entry], in_use: set[str],
                                gone: list[str]) -> None:
    assert plan(entries, in_use, LIMITS, NOW) == [f"sha256:{g}" for g in gone]


def test_prune_deletes_the_planned_files_and_stale_parts_only(tmp_path: Path) -> None:
    for name, size, age in [("aa", 60, 300), ("bb", 60, 200), ("cc", 60, 100)]:
        path = tmp_path / f"{name}.tar"
        path.write_bytes(b"x" * size)
        os.utime(path, (NOW - age, NOW - age))
    stale, fresh = tmp_path / "x.part", tmp_path / "y.part"
    stale.write_bytes(b"")
    fresh.write_bytes(b"")
    os.utime(stale, (NOW - 100, NOW - 100))
    os.utime(fresh, (NOW - 1, NOW - 1))
    gone = prune(tmp_path, {"sha256:aa"}, LIMITS, NOW)
    assert gone == ["sha256:bb", "sha256:cc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aa.tar", "y.part"]
    assert prune(tmp_path / "missing", set(), LIMITS, NOW) == []
