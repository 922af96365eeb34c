"""The records remote-engine backends keep (pure files, no engine): idempotent launch, stop
requests that never extend a deadline, ends kept once, re-reading after a restart; and the one
mapping from a runner's exit record to a worker state."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.backends import InvalidRequest, LaunchConflict, UnknownAttempt, WorkerState, base
from corral.backends.exits import ended_from_record, lost
from corral.backends.records import AttemptRecords, to_stop

from .conftest import make_spec

END_CASES = [
    pytest.param({"exit_code": 0}, "", (WorkerState.SUCCEEDED, base.EXITED, 0), id="done"),
    pytest.param({"exit_code": 3}, "", (WorkerState.FAILED, base.EXITED, 3), id="failed"),
    pytest.param({"exit_code": -11}, "", (WorkerState.FAILED, base.KILLED_BY_SIGNAL, -11),
                 id="segfault"),
    pytest.param({"exit_code": 127, "reason": base.COMMAND_NOT_FOUND}, "",
                 (WorkerState.FAILED, base.COMMAND_NOT_FOUND, 127), id="no-program"),
    pytest.param({"exit_code": 0, "stopped": True}, "Preempt",
                 (WorkerState.STOPPED, base.STOPPED_IN_TIME, 0), id="checkpointed-in-time"),
    pytest.param({"exit_code": -9, "stopped": True, "reason": base.KILLED_AFTER_GRACE}, "Cancel",
                 (WorkerState.STOPPED, base.KILLED_AFTER_GRACE, -9), id="killed-at-deadline"),
]


@pytest.mark.parametrize(("record", "stop_reason", "expected"), END_CASES)
def test_exit_records_map_to_states(record: dict, stop_reason: str, expected: tuple) -> None:
    end = ended_from_record(record, stop_reason)
    assert (end.state, end.reason, end.exit_code) == expected
    if stop_reason:
        assert end.message.startswith(stop_reason)


def test_launch_records_are_idempotent_and_survive_a_restart(tmp_path: Path) -> None:
    records = AttemptRecords(tmp_path)
    spec = make_spec("wl").workers(2).build()
    assert records.existing(spec) is None
    record = records.create(spec, {"jobs": {"0": "12"}})
    assert records.existing(spec) is not None
    with pytest.raises(LaunchConflict):
        records.existing(make_spec("wl").workers(2).python("print(2)").build())
    first = record.request_stop(30.0, "preempted")
    assert first is not None
    assert record.request_stop(60.0, "again") is None  # never extends
    sooner = record.request_stop(1.0, "again")
    assert sooner is not None and (sooner.reason, sooner.deadline < first.deadline) == (
        "preempted", True)
    record.end(1, lost(base.NODE_LOST, "gone"))
    record.end(1, lost(base.PROCESS_GONE, "later news"))  # the first end stays
    [again] = AttemptRecords(tmp_path).scan()
    assert (again.spec, again.engine, again.ends[1].reason) == (spec, {"jobs": {"0": "12"}},
                                                                base.NODE_LOST)
    assert not again.all_ended
    AttemptRecords.mark_released(again)
    assert list(AttemptRecords(tmp_path).scan()) == []
    assert records.find("wl", None).spec == spec  # released attempts stay findable (logs)
    with pytest.raises(UnknownAttempt):
        records.find("other", None)


def test_a_failed_launch_ends_every_worker_not_yet_ended_as_lost(tmp_path: Path) -> None:
    record = AttemptRecords(tmp_path).create(make_spec("half").workers(3).build(), {})
    record.end(0, lost(base.NODE_LOST, "gone before the failure"))
    record.end_launch_failed(RuntimeError("sbatch timed out"))
    assert record.all_ended
    assert [(record.ends[w].state, record.ends[w].reason) for w in (0, 1, 2)] == [
        (WorkerState.LOST, base.NODE_LOST),
        (WorkerState.LOST, base.LAUNCH_INTERRUPTED),
        (WorkerState.LOST, base.LAUNCH_INTERRUPTED)]
    assert "launch failed: sbatch timed out" in record.ends[2].message


def test_a_stop_acts_on_a_live_attempt_only_and_refuses_a_negative_grace(tmp_path: Path) -> None:
    record = AttemptRecords(tmp_path).create(make_spec("live").build(), {})
    attempts = {record.key: record}
    with pytest.raises(InvalidRequest, match="grace_seconds"):
        to_stop(attempts, "live", 0, -1.0)
    assert to_stop(attempts, "live", 0, 5.0) is record
    assert to_stop(attempts, "live", 1, 5.0) is None  # another attempt: nothing to stop
    record.end(0, lost(base.NODE_LOST, "gone"))
    assert to_stop(attempts, "live", 0, 5.0) is None  # over: a stop is a no-op


def test_a_torn_record_is_skipped_not_fatal(tmp_path: Path) -> None:
    records = AttemptRecords(tmp_path)
    records.create(make_spec("ok").build(), {})
    torn = tmp_path / "torn" / "0"
    torn.mkdir(parents=True)
    (torn / "launch.json").write_text('{"version": 1, "spec": ')
    fresh = AttemptRecords(tmp_path)
    assert [r.spec.workload_id for r in fresh.scan()] == ["ok"]
    assert fresh.unreadable == [torn / "launch.json"]
    with pytest.raises(LaunchConflict):
        fresh.existing(make_spec("torn").build())
