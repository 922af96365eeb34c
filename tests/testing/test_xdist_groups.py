"""Which tests share an xdist worker: Ray tests all on one, a module with its own shared fixture
on one; checked on fake items (the rule) and on a real `pytest -n 2 --dist loadgroup` run (that
the markers arrive before xdist reads them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.testing.xdist_groups import RAY_GROUP, duplicate_ids, group_of, prepare_items


@dataclass
class FakeItem:
    nodeid: str = "tests/x/test_m.py::test_a"
    markers: dict[str, Any] = field(default_factory=dict)
    scopes: dict[str, str] = field(default_factory=dict)  # fixture name -> scope

    @property
    def fixturenames(self) -> list[str]:
        return list(self.scopes)

    @property
    def _fixtureinfo(self) -> SimpleNamespace:
        return SimpleNamespace(name2fixturedefs={
            name: [SimpleNamespace(scope=scope)] for name, scope in self.scopes.items()})

    def get_closest_marker(self, name: str) -> Any:
        return self.markers.get(name)


@pytest.mark.parametrize(("item", "group"), [
    pytest.param(FakeItem(), None, id="plain-test-goes-anywhere"),
    pytest.param(FakeItem(scopes={"tmp_path": "function", "postgres_server": "session"}), None,
                 id="session-servers-are-one-per-worker"),
    pytest.param(FakeItem(markers={"ray": object()}), RAY_GROUP, id="ray-marker"),
    pytest.param(FakeItem(scopes={"ray_driver": "module"}), RAY_GROUP,
                 id="ray-fixture-wins-over-module"),
    pytest.param(FakeItem(scopes={"server": "module"}), "tests/x/test_m.py", id="module-fixture"),
    pytest.param(FakeItem(nodeid="tests/x/test_m.py::TestC::test_a", scopes={"db": "class"}),
                 "tests/x/test_m.py", id="class-fixture-groups-the-module"),
    pytest.param(FakeItem(markers={"xdist_group": object(), "ray": object()}), None,
                 id="explicit-group-is-kept"),
])
def test_group_of(item: FakeItem, group: str | None) -> None:
    assert group_of(item) == group


MODULE = '''
import os, json, pytest
from pathlib import Path

OUT = Path(os.environ["GROUPS_OUT"])

@pytest.fixture(scope="module")
def shared():
    return os.getpid()

def _record(name):
    with open(OUT, "a") as f:
        f.write(json.dumps([name, os.environ["PYTEST_XDIST_WORKER"]]) + "\\n")

@pytest.mark.parametrize("i", range(6))
def test_shared(shared, i):
    _record("shared")

@pytest.mark.parametrize("i", range(6))
def test_loose(i):
    _record("loose")
'''


@pytest.mark.timeout(120)
@pytest.mark.slow  # a real `pytest -n 2` run in a subprocess (~15 s)
def test_a_real_xdist_run_keeps_a_module_fixture_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent('''
        import pytest
        from corral.testing.xdist_groups import mark_groups

        @pytest.hookimpl(trylast=True)  # as tests/conftest.py does
        def pytest_collection_modifyitems(config, items):
            mark_groups(items, pytest.mark.xdist_group,
                        suffix_ids=bool(config.getoption("loadgroup", False)))
    '''))
    (tmp_path / "test_m.py").write_text(MODULE)
    out = tmp_path / "groups.jsonl"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                        "-n", "2", "--dist", "loadgroup", "-o", "addopts=", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=110,
                       env={**_env(), "GROUPS_OUT": str(out)})
    assert r.returncode == 0, r.stdout + r.stderr
    ran = [tuple(json.loads(line)) for line in out.read_text().splitlines()]
    assert len(ran) == 12
    assert len({w for name, w in ran if name == "shared"}) == 1  # one worker, one fixture


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


SHARED_ID_CONFTEST = '''
import pytest
from corral.testing.xdist_groups import prepare_items

@pytest.hookimpl(hookwrapper=True)
def pytest_pycollect_makeitem(collector, name, obj):
    """As Schemathesis 4 does: one item per operation, the operation in the name, the
    function's own name as originalname and no callspec (pytest 9.2: one node id for all)."""
    outcome = yield
    if name == "test_op":
        outcome.force_result([pytest.Function.from_parent(
            collector, name=f"test_op[{op}]", originalname="test_op", callobj=obj)
            for op in ("GET /a", "POST /a", "GET /b")])

@pytest.hookimpl(trylast=True)  # as tests/conftest.py does
def pytest_collection_modifyitems(config, items):
    prepare_items(config, items)
'''

SHARED_ID_MODULE = '''
import json, os

def test_op(request):
    with open(os.environ["GROUPS_OUT"], "a") as f:
        f.write(json.dumps(request.node.name) + "\\n")
'''


@pytest.mark.timeout(120)
@pytest.mark.slow  # a real `pytest -n 2` run in a subprocess (~15 s)
def test_items_that_share_a_node_id_all_run_under_loadgroup(tmp_path: Path) -> None:
    """The API fuzz's 83 items had one node id; xdist's loadgroup queue is keyed by node id, so
    it ran one of them and reported 3,803 results of 3,885 collected, all green."""
    (tmp_path / "conftest.py").write_text(SHARED_ID_CONFTEST)
    (tmp_path / "test_ops.py").write_text(SHARED_ID_MODULE)
    out = tmp_path / "ran.jsonl"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                        "-n", "2", "--dist", "loadgroup", "-o", "addopts=", str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, timeout=110,
                       env={**_env(), "GROUPS_OUT": str(out)})
    assert r.returncode == 0, r.stdout + r.stderr
    ran = sorted(json.loads(line) for line in out.read_text().splitlines())
    assert ran == ["test_op[GET /a]", "test_op[GET /b]", "test_op[POST /a]"], r.stdout
    assert "3 passed" in r.stdout, r.stdout


def test_an_id_left_shared_is_refused_on_a_worker() -> None:
    items = [FakeItem(nodeid="t.py::test_a"), FakeItem(nodeid="t.py::test_a"), FakeItem()]
    assert duplicate_ids(items) == ["t.py::test_a"]
    worker = SimpleNamespace(workerinput={}, getoption=lambda *a: False)
    with pytest.raises(pytest.UsageError, match=r"t\.py::test_a.*distinct id"):
        prepare_items(worker, items)
