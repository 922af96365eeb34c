"""The simulator does not model elastic jobs: a generic task list that describes one is refused
with a sentence naming elastic, never replayed as a plain gang of `workers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.sim import generic
from corral.sim.trace import TraceFormatError

HEAD = "id,submit_time,gpus,cpu_milli,memory_mib,workers"


@pytest.mark.parametrize("column", generic.ELASTIC_COLUMNS)
def test_a_task_list_with_an_elastic_column_is_refused_naming_elastic(
        tmp_path: Path, column: str) -> None:
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(f"{HEAD},{column}\nt1,0,1,1000,1024,2,8\n")
    with pytest.raises(TraceFormatError, match=rf"tasks\.csv: column\(s\) '{column}' describe "
                       "elastic jobs, which the simulator does not model"):
        generic.load_tasks(tasks)


def test_a_plain_gang_still_loads(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(f"{HEAD}\nt1,0,1,1000,1024,2\n")
    [task] = generic.load_tasks(tasks)
    assert (task.name, task.workers, task.gpus) == ("t1", 2, 1)
