"""Ray's node host writes an elastic member's world file on its node (as agents do on their
hosts), without a Ray cluster: `ray_worker.NodeHost` as an object, the path its `start` takes
(the same code runs in the actor: tests/integration/test_elastic_ray.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from corral.backends import ray_worker
from corral.backends.elastic_world import world_body, write_world_file

from .conftest import eventually


def start(tmp_path: Path, generation: int, size: int, worker: int = 0) -> Path:
    host = ray_worker.NodeHost()
    ckpt = tmp_path / "ckpt"
    env = {"CORRAL_CHECKPOINT_DIR": str(ckpt), "CORRAL_WORKER_INDEX": "0",
           "CORRAL_ELASTIC_WORLD_FILE": str(ckpt / ".corral-world.json"),
           "CORRAL_ELASTIC_GENERATION": str(generation), "CORRAL_WORLD_SIZE": str(size),
           "CORRAL_ELASTIC_MIN_WORKERS": "2", "CORRAL_ELASTIC_MAX_WORKERS": "5"}
    place = (str(tmp_path / "root"), "el", generation, "tok", worker)
    host.start(place, [sys.executable, "-c", "pass"], env, None, None)
    eventually(lambda: (s := host.status(place)) and s["state"] == "ended", "the worker",
               timeout=60)
    host.reap(place, remove=True)
    return ckpt / ".corral-world.json"


@pytest.fixture(autouse=True)
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_worker, "_node_address", lambda: "127.0.0.1")
    monkeypatch.setattr(ray_worker, "_node_id", lambda: "node-a")


def test_a_member_started_on_a_node_writes_its_world_there(tmp_path: Path) -> None:
    path = start(tmp_path, generation=2, size=4)
    assert json.loads(path.read_text()) == world_body(2, 4, 2, 5)
    start(tmp_path, generation=3, size=3, worker=1)  # a newer world replaces it
    assert json.loads(path.read_text())["world_size"] == 3


def test_the_control_planes_file_of_the_same_generation_is_kept(tmp_path: Path) -> None:
    """Written before the stop of a resize with the members, which a node cannot know."""
    (tmp_path / "ckpt").mkdir()
    ours = world_body(2, 4, 2, 5, ["el", "el-e1", "el-e2"])
    write_world_file(str(tmp_path / "ckpt" / ".corral-world.json"), ours)
    path = start(tmp_path, generation=2, size=4)
    assert json.loads(path.read_text()) == ours
