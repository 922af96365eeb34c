"""A worker whose setup failed (reason SetupFailed) fails its workload as SetupFailed with the
exit code and the fix, not retried by default; retried when restart_on lists the code."""

from __future__ import annotations

import pytest

from corral.backends import base
from corral.backends.base import WorkerState
from corral.store import Store

from .rig import Rig


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def _setup_fails(rig: Rig, wid: str, code: int) -> None:
    rig.backend.fail(wid, exit_code=code, message=f"setup exited {code}")
    # the fake ends a worker as Exited: make it what a runner reports after a failed setup
    for (w_id, _), workers in rig.world.workers.items():
        for w in workers:
            if w_id == wid and w.state == WorkerState.FAILED:
                w.reason = base.SETUP_FAILED


def test_a_failed_setup_is_not_retried_and_says_so(rig: Rig) -> None:
    wid = rig.submit(setup="pip install nope", max_restarts=3)
    rig.step(2)
    _setup_fails(rig, wid, 3)
    rig.step(3)
    rec = rig.get(wid)
    assert (rec.state, rec.reason_code, rec.exit_code) == ("failed", "SetupFailed", 3)
    assert "a setup failure (exit code 3)" in rec.reason_message
    assert "{exit_code: [3]}" in rec.reason_message
    assert len(rig.backend.launches) == 1 and rig.backend.launches[0].setup == "pip install nope"


def test_a_failed_setup_is_retried_when_restart_on_lists_its_code(rig: Rig) -> None:
    wid = rig.submit(setup="flaky-mirror-install", restart_on=[{"exit_code": [3]}],
                     restart_backoff=0)
    rig.step(2)
    _setup_fails(rig, wid, 3)
    rig.step(4)
    assert rig.get(wid).attempt == 1 and len(rig.backend.launches) == 2
