"""The live loop opens each cycle from the state it kept since the last one
(`corral.core.warm_start.WarmStart`), and plans what a cold cycle on the same state plans."""

from __future__ import annotations

from typing import Any

import pytest
from tests.control.rig import Rig

import corral.control.loop as loop_module
from corral.core import schedule
from corral.core.warm_start import WarmStart
from corral.store import Store


def test_the_loop_keeps_the_opening_between_cycles_and_plans_as_a_cold_cycle(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(store)
    seen: list[tuple[bool, int]] = []

    def checked(state: Any, now: float, config: Any = None, seed: int = 0,
                warm: WarmStart | None = None) -> Any:
        plan = schedule(state, now, config, seed, warm)
        assert plan == schedule(state, now, config, seed)  # the cold cycle's plan
        seen.append((warm is not None, warm.rebuilds if warm else 0))
        return plan

    monkeypatch.setattr(loop_module, "schedule", checked)
    for _ in range(40):  # more than the 8 GPUs hold: most of it waits
        rig.submit()
    rig.step(2)
    for k in range(6):
        rig.submit(gpus=1 + k % 2)
        rig.step()
    assert len(seen) >= 6
    assert all(warm for warm, _ in seen)
    # built on the first cycle, and again on the second (the 8 placements of the first
    # started: 16 of 40 workloads changed, past a quarter); from then on opened from what
    # changed (a workload or two a cycle)
    assert [rebuilds for _, rebuilds in seen] == [1] + [2] * (len(seen) - 1)
