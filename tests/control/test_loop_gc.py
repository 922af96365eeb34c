"""The loop's sweep in a large pool (`ControlLoop._sweep`): a step frees its cyclic garbage and
freezes what it leaves alive; cycles that form among frozen objects are freed by the periodic
full sweep. `FREEZE_AFTER_RECORDS` is lowered so a one-workload pool counts as large."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from corral.control import loop as L
from corral.store import Store
from corral.store.database import sqlite_url

from .rig import Rig


class Node:
    """A cycle: a node that refers to itself."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def rig(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    monkeypatch.setattr(L, "FREEZE_AFTER_RECORDS", 1)
    monkeypatch.setattr(L, "FULL_SWEEP_STEPS", 3)
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    rig = Rig(store)
    rig.submit(gpus=1)
    try:
        yield rig
    finally:  # the freeze is the whole process's: leave none behind for other tests
        gc.unfreeze()
        store.close()


def test_a_step_frees_its_cyclic_garbage_before_it_freezes(rig: Rig) -> None:
    rig.step()  # the first step's full read freezes what is alive then (`_refresh`)
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    gc.disable()  # only the loop's own collection may free it
    try:
        rig.step()
    finally:
        gc.enable()
    assert gone() is None
    assert gc.get_freeze_count() > 0
    assert "gc" in rig.loop.step().stages


def test_cycles_formed_among_frozen_objects_are_freed_by_the_full_sweep(rig: Rig) -> None:
    held = [Node()]
    rig.step()  # the live cycle is frozen with the step's survivors
    gone = weakref.ref(held[0])
    held.clear()  # now garbage, but frozen: a step's collection does not see it
    rig.step()
    assert gone() is not None
    rig.step(3)  # FULL_SWEEP_STEPS later the frozen objects are swept too
    assert gone() is None


def test_a_large_pools_step_runs_without_the_collector_and_gives_it_back(rig: Rig) -> None:
    seen: list[bool] = []
    poll = rig.backend.poll_changes

    def watched(now: float):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return poll(now)

    rig.backend.poll_changes = watched  # type: ignore[method-assign]
    rig.step(2)  # the first step does not know yet that the pool is large
    assert seen == [True, False]
    assert gc.isenabled()


def test_the_step_that_reads_a_large_pool_in_full_runs_the_rest_without_the_collector(
        rig: Rig) -> None:
    seen: list[bool] = []
    poll = rig.backend.poll_changes

    def watched(now: float):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return poll(now)

    rig.backend.poll_changes = watched  # type: ignore[method-assign]
    launch = rig.backend.launch

    def launching(spec):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return launch(spec)

    rig.backend.launch = launching  # type: ignore[method-assign]
    rig.step()  # polled before the full read, launched after it
    assert seen == [True, False]
    assert gc.isenabled()


def _watch_full_reads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the collector was on during each full read of the store (`LiveState.reload`)."""
    from corral.control.live_state import LiveState

    seen: list[bool] = []
    reload = LiveState.reload

    def watched(self: LiveState, conn):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        reload(self, conn)

    monkeypatch.setattr(LiveState, "reload", watched)
    return seen


def test_a_full_read_runs_without_the_collector_and_a_small_pool_gets_it_back(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(L, "FREEZE_AFTER_RECORDS", 5_000)  # one workload: a small pool
    seen = _watch_full_reads(monkeypatch)
    launched: list[bool] = []
    launch = rig.backend.launch

    def launching(spec):  # type: ignore[no-untyped-def]
        launched.append(gc.isenabled())
        return launch(spec)

    rig.backend.launch = launching  # type: ignore[method-assign]
    rig.step()
    assert seen == [False]  # the read made its objects with the collector off...
    assert launched == [True]  # ...and a small pool's step goes on with it back on
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_failed_full_read_gives_the_collector_back(rig: Rig,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.control.live_state import LiveState

    def broken(self: LiveState, conn):  # type: ignore[no-untyped-def]
        raise RuntimeError("the database went away")

    monkeypatch.setattr(LiveState, "reload", broken)
    with pytest.raises(RuntimeError):
        rig.loop.step()
    assert gc.isenabled()
