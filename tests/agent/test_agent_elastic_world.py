"""An elastic member's world file on the host where it runs (`corral.backends.elastic_world`):
the agent writes it from the launch's variables, as the control plane writes it where it sees
the checkpoint directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

from corral.agent.protocol import AssignmentOut, HostFacts
from corral.agent.runtime import Agent, AgentSettings
from corral.backends import elastic_world as EW
from corral.backends.base import LaunchSpec, WorkerState
from corral.core.model import WorkerAssignment


def world_env(path: Path, generation: int, size: int) -> dict[str, str]:
    return {EW.CORRAL_ELASTIC_WORLD_FILE: str(path), EW.CORRAL_ELASTIC_GENERATION: str(generation),
            EW.CORRAL_WORLD_SIZE: str(size), EW.CORRAL_ELASTIC_MIN: "2",
            EW.CORRAL_ELASTIC_MAX: "8"}


def test_the_file_is_written_whole_never_back_to_an_older_world_nor_in_a_missing_dir(
        tmp_path: Path) -> None:
    path = tmp_path / ".corral-world.json"
    assert EW.write_from_env(world_env(path, 2, 4))
    assert json.loads(path.read_text()) == {"generation": 2, "world_size": 4, "min_workers": 2,
                                            "max_workers": 8}
    assert not EW.write_from_env(world_env(path, 1, 6))  # a slower member of the old world
    assert json.loads(path.read_text())["world_size"] == 4
    assert EW.write_from_env(world_env(path, 3, 6))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    missing = tmp_path / "not-made" / ".corral-world.json"
    assert not EW.write_from_env(world_env(missing, 1, 2)) and not missing.parent.exists()
    assert not EW.write_from_env({"CORRAL_WORLD_SIZE": "2"})  # not an elastic member's launch
    assert not EW.write_from_env({**world_env(path, 4, 2), EW.CORRAL_ELASTIC_WORLD_FILE: ""})


def test_the_agent_writes_the_world_of_a_member_it_launches(tmp_path: Path) -> None:
    agent = Agent(AgentSettings(server="http://127.0.0.1:9", data_dir=tmp_path / "agent",
                                node_id="host-x"), HostFacts(gpus=1))
    ckpt = tmp_path / "ckpt" / "el-1"
    spec = LaunchSpec(workload_id="el-1-e1", attempt=0, queue="q", command=("true",),
                      assignments=(WorkerAssignment(0, "host-x", (0,), 1000, 0),),
                      checkpoint_dir=str(ckpt),
                      env=world_env(ckpt / ".corral-world.json", 3, 5))
    assert not ckpt.exists()  # the launch makes it: the file is written once it exists
    assert agent._launch(("el-1-e1", 0), AssignmentOut(
        workload_id="el-1-e1", attempt=0, worker=0, spec=spec.as_record(),
        master_addr="127.0.0.1", master_port=29500))
    assert json.loads((ckpt / ".corral-world.json").read_text())["world_size"] == 5
    deadline = time.monotonic() + 30
    while not all(s.state.ended for s in agent.backend.poll(time.time())):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert {s.state for s in agent.backend.poll(time.time())} == {WorkerState.SUCCEEDED}
