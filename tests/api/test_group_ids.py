"""A submission's group id (corral.control.group_ids): random hex from os.urandom, drawn a block
at a time, so the API's event loop makes no system call (and no GIL hand-off) per submission."""

from __future__ import annotations

import os
import re
import threading

import pytest

from corral.control.group_ids import GroupIds


def test_ids_are_a_name_and_eight_hex_digits_all_different() -> None:
    ids = GroupIds()
    drawn = [ids.group_id("train") for _ in range(5000)]
    assert all(re.fullmatch(r"train-[0-9a-f]{8}", g) for g in drawn)
    assert len(set(drawn)) == len(drawn)


def test_the_kernel_is_asked_once_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def counted(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counted)  # group_ids calls os.urandom
    ids = GroupIds(block=64)  # 16 ids a block
    for _ in range(40):
        ids.suffix()
    assert calls == [64, 64, 64]


def test_threads_never_get_the_same_bytes() -> None:
    ids, got, lock = GroupIds(block=40), [], threading.Lock()

    def draw() -> None:
        mine = [ids.suffix() for _ in range(500)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4000 and len(set(got)) == 4000
