"""The SDK's spec builder against a real `corral up`: the documented example runs as written
(examples/sdk_pipeline.py), a pipeline is stored with each `after()` given its parent's new
id, and a pipeline with one refused step stores nothing, the refusal named by its step."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.sdk.batch import Refused
from corral.sdk.builder import Pipeline, job
from corral.testing.corral_up import CorralServer, stop_workers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    srv = CorralServer(tmp_path_factory.mktemp("corral-sdk")).start()
    yield srv
    srv.stop()
    stop_workers(srv.data_dir)


def _names(server: CorralServer, prefix: str) -> list[str]:
    with server.client() as c:
        return sorted(w.name for w in c.list(limit=1000).items if w.name.startswith(prefix))


def test_the_documented_example_runs(server: CorralServer) -> None:
    env = {**server.env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, str(ROOT / "examples/sdk_pipeline.py"), "--queue",
                        "default"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "caught before submitting" in r.stdout and "did you mean 'gpus'?" in r.stdout
    assert "submitted lr-sweep: 4 tasks" in r.stdout
    assert "report ended: succeeded" in r.stdout
    with server.client() as c:
        by_name = {w.name: w for w in c.list(limit=1000).items}
        train, report = c.get(by_name["train"].id), c.get(by_name["report"].id)
    assert train.state == report.state == "succeeded"


def test_after_becomes_the_parents_new_id(server: CorralServer) -> None:
    first = job("chain-a", queue="default", cpu=0.1, memory=64).run(sys.executable, "-c", "1")
    second = (job("chain-b", queue="default", cpu=0.1, memory=64)
              .run(sys.executable, "-c", "2").after(first, when="ended"))
    with server.client() as c:
        a, b = Pipeline(first, second).submit(c)
        stored = c.get(b.workloads[0].id)
    assert a.group_id != "chain-a"  # an id, not the name the builder knew
    assert stored.spec["depends_on"] == [{"id": a.group_id, "when": "ended"}]


def test_one_refused_step_stores_nothing(server: CorralServer) -> None:
    good = job("aon-sdk-a", queue="default", cpu=0.1, memory=64).run(sys.executable, "-c", "1")
    bad = job("aon-sdk-b", queue="no-such-queue", cpu=0.1, memory=64).run("true")
    with server.client() as c, pytest.raises(Refused) as caught:
        Pipeline(good, bad).submit(c)
    [(where, why)] = caught.value.problems
    assert where == "workloads[1]" and "queue 'no-such-queue' does not exist" in why
    assert [i.outcome for i in caught.value.items] == ["checked", "refused"]
    assert caught.value.stored == []
    assert _names(server, "aon-sdk-") == []


def test_client_submit_and_dry_run_take_a_builder(server: CorralServer) -> None:
    """`c.submit(w)` is `w.submit(c)`: no `to_dict()` needed, the same checks first."""
    from corral.sdk.builder import SpecError

    w = job("direct-a", queue="default", cpu=0.1, memory=64).run(sys.executable, "-c", "1")
    with server.client() as c:
        assert c.dry_run(w).outcome == "start"
        sub = c.submit(w, idempotency_key="direct-a-once")
        assert c.submit(w, idempotency_key="direct-a-once").group_id == sub.group_id
        stored = c.get(sub.workloads[0].id)
        child = job("direct-b", queue="default").run("true").after(w)
        with pytest.raises(SpecError, match=r"Pipeline\(parent, \.\.\., this\)"):
            c.submit(child)  # names a parent built here, which has no id: refused unsent
        with pytest.raises(TypeError, match=r"pipeline\.submit\(client\)"):
            c.submit(Pipeline(w))  # type: ignore[arg-type]
    assert (stored.name, stored.spec["command"]) == ("direct-a", [sys.executable, "-c", "1"])
    assert _names(server, "direct-") == ["direct-a"]
