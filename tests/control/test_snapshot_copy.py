"""The snapshot's copy of a spec's core unit equals `dataclasses.replace` (it skips its checks)."""

from __future__ import annotations

import dataclasses

from corral.control.snapshot import _copy
from corral.core.model import WorkerAssignment, WorkerResources, Workload, WorkloadState


def test_every_workload_field_is_set_by_init_and_the_copy_equals_replace() -> None:
    assert all(f.init for f in dataclasses.fields(Workload))
    unit = Workload("", "research", WorkerResources(gpus=2), workers=2, priority=3,
                    gpu_models=("H100",), spread_group="svc")
    placed = (WorkerAssignment(0, "n1", (0, 1), 1000, 0),)
    changes = {"id": "w1", "submitted_at": 5.0, "user": "ann", "spread_group": "svc-1",
               "state": WorkloadState.RUNNING, "started_at": 7.0, "assignments": placed}
    assert _copy(unit, **changes) == dataclasses.replace(unit, **changes)  # type: ignore[arg-type]
    assert _copy(unit) == unit and _copy(unit) is not unit
