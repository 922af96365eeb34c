"""Workflow fields on a real Slurm (slurmctld + slurmd, started by the test): the retry policy,
dependencies and arrays behave there as on the local backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.backends.slurm import SlurmBackend
from corral.testing.slurm import SlurmCluster

from .plane import Plane

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def plane(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Plane]:
    yield Plane.start(tmp_path, SlurmBackend(tmp_path / "work", env=slurm_cluster.env))
    slurm_cluster.cancel_all_jobs()  # a failed test may leave jobs on the shared cluster


def test_an_exit_code_is_retried_only_when_listed(plane: Plane) -> None:
    [fails] = plane.submit("fails", "exit 3", max_restarts=3)
    [flaky] = plane.submit("flaky", '[ "$CORRAL_ATTEMPT" = 1 ] || exit 3', restart_backoff=0,
                           restart_on=[{"exit_code": [3]}])
    plane.run_until(lambda: plane.ended(fails, flaky), "both jobs to end")
    a, b = plane.record(fails), plane.record(flaky)
    assert (a.state, a.reason_code, a.exit_code, a.attempt) == ("failed", "NotRetried", 3, 0)
    assert (b.state, b.attempt, b.restart_count) == ("succeeded", 1, 1)


def test_dependents_start_after_their_parent_or_are_cancelled(plane: Plane) -> None:
    [prep] = plane.submit("prep", "sleep 1")
    [train] = plane.submit("train", "true", depends_on=[{"id": prep}])
    [broken] = plane.submit("broken", "exit 4")
    [after] = plane.submit("after", "true", depends_on=[{"id": broken, "when": "succeeded"}])
    [cleanup] = plane.submit("cleanup", "true", depends_on=[{"id": broken, "when": "failed"}])
    assert plane.record(train).reason_code == "WaitingForDependency"
    plane.run_until(lambda: plane.ended(prep, train, broken, after, cleanup), "the chains")
    p, t = plane.record(prep), plane.record(train)
    assert (p.state, t.state) == ("succeeded", "succeeded")
    assert p.finished_at is not None and plane.launched_at(train) >= p.finished_at
    a = plane.record(after)
    assert (a.state, a.reason_code) == ("cancelled", "DependencyNeverMet")
    assert broken in a.reason_message
    assert plane.record(cleanup).state == "succeeded"


def test_an_array_runs_its_tasks_with_their_parameters_at_most_parallel_at_once(
        plane: Plane, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # Slurm runs the tasks as the submitting user, but say so plainly
    ids = plane.submit("sweep", f'echo "$CORRAL_PARAM_LR $CORRAL_PARAMS" > {out}/'
                       '"$CORRAL_ARRAY_INDEX"; sleep 1',
                       array={"grid": {"lr": [0.1, 0.2, 0.3, 0.4]}, "parallel": 2})
    plane.run_until(lambda: plane.ended(*ids), "every task", timeout=120)
    assert {plane.record(w).state for w in ids} == {"succeeded"}
    assert sorted(p.read_text() for p in out.iterdir()) == [
        f'{lr} {{"lr": {lr}}}\n' for lr in (0.1, 0.2, 0.3, 0.4)]
    spans = [(plane.launched_at(w), plane.record(w).finished_at or 0.0) for w in ids]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most <= 2
