"""One workload's launch can never fail a control-loop step (issue 15, item 1).

A launch that raises what no backend promises (ValueError from os.posix_spawn for a NUL byte,
a bug) fails that workload for good, with the error as its reason, and the loop launches the
others in the same step. A stored spec that today's submission rules refuse (accepted by an
older corral, or written past the API) still loads, so it cannot stop the loop either.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.backends.base import LaunchSpec
from corral.backends.fake import FakeBackend
from corral.control import lifecycle as L
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store.database import sqlite_url

from .rig import Rig


class PoisonedBackend(FakeBackend):
    """Raises ValueError (as os.posix_spawn does for an embedded NUL) for one workload name."""

    def __init__(self, *args: object, poisoned: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.poisoned = poisoned
        self.launches: list[str] = []

    def launch(self, spec: LaunchSpec) -> None:
        self.launches.append(spec.workload_id)
        if spec.workload_id.startswith(self.poisoned):
            raise ValueError("embedded null byte")
        super().launch(spec)


@pytest.fixture
def rig(store: Store) -> Rig:
    r = Rig(store)
    r.backend = PoisonedBackend(r.nodes, world=r.world, check_capacity=True, poisoned="bad")
    r.loop = r.new_loop(r.backend)
    return r


def test_a_launch_that_raises_fails_only_its_workload(rig: Rig) -> None:
    bad = rig.submit(name="bad", priority=10)  # launched first: it sorts before the good one
    good = rig.submit(name="good")
    rig.step()
    assert rig.state(good) == "starting"
    rec = rig.get(bad)
    assert (rec.state, rec.reason_code) == ("failed", L.LAUNCH_FAILED)
    assert "ValueError: embedded null byte" in rec.reason_message
    assert rec.restart_count == 0 and rec.attempt == 0


def test_an_unlaunchable_spec_is_not_relaunched_every_cycle(rig: Rig) -> None:
    bad = rig.submit(name="bad", max_restarts=1000)
    good = rig.submit(name="good")
    rig.step(5)
    assert rig.backend.launches.count(bad) == 1
    assert rig.state(bad) == "failed"
    rig.backend.start(good)
    rig.step()
    assert rig.state(good) == "running"


@pytest.fixture
def sqlite_rig(tmp_path: object) -> Iterator[Rig]:
    # PostgreSQL cannot store a NUL byte in JSON at all: only SQLite can hold such a row
    s = Store(sqlite_url(tmp_path / "corral.db"))  # type: ignore[operator]
    s.upgrade()
    yield Rig(s)
    s.close()


def test_a_stored_row_that_submission_would_refuse_does_not_stop_the_loop(
        sqlite_rig: Rig) -> None:
    rig = sqlite_rig
    valid = WorkloadSpec.model_validate({"name": "bad", "queue": "q", "gpus": 1, "cpu": 0.1,
                                         "memory": 64, "command": ["run"]})
    poisoned = valid.model_copy(update={"command": ["run", "a\x00b"]})  # past validation
    bad = rig.submissions.submit(poisoned, "ann", rig.clock.now())[0].id
    good = rig.submit(name="good")
    rig.step(3)
    assert rig.state(good) in ("starting", "running")
    assert rig.state(bad) in ("starting", "running")  # the fake backend builds no argv
    with pytest.raises(ValueError, match="NUL"):
        WorkloadSpec.model_validate(rig.get(bad).spec)  # a new submission of it is refused
