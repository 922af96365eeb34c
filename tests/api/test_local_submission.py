"""On the local backend, what its launch would refuse (`LocalBackend._check_spec`) is refused at
submission: a 422 naming the field, and nothing stored (issue 15: bench/api_fuzz.py --with-loop
counted 2 accepted specs refused at launch, both a relative working_dir that was no directory
here; the fuzz's API ran without the local pool's submission checks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.store import Store
from corral.store.database import sqlite_url

from .harness import Api, build, job


def _api(tmp_path: Path, backend_name: str) -> Iterator[Api]:
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    yield build(store, backend_name=backend_name)
    store.close()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Api]:
    yield from _api(tmp_path, "local")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from _api(tmp_path, "fake")


def _refused(api: Api, spec: dict[str, Any], field: str) -> str:
    before = api.rows()
    r = api.client.post("/v1/workloads", json=spec, headers=api.admin)
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == [field], r.text
    assert api.rows() == before
    return str(r.json()["problems"][0]["message"])


@pytest.mark.parametrize("working_dir", ["RTNNPq", "D", "/nonexistent"])
def test_a_working_dir_that_is_no_directory_here_is_refused(local: Api, working_dir: str) -> None:
    # the two the fuzz found were relative names (resolved against the server's directory)
    message = _refused(local, job(command=["true"], working_dir=working_dir), "working_dir")
    assert repr(working_dir) in message and "create it or fix the path" in message


def test_a_program_not_on_the_specs_own_path_is_refused(local: Api, tmp_path: Path) -> None:
    message = _refused(local, job(command=["true"], env={"PATH": "/nonexistent"}), "env.PATH")
    assert "'true'" in message and "full path" in message
    # found on the spec's PATH, a full path, an empty PATH (the backend's own), or a shell: taken
    for spec in (job(command=["true"], env={"PATH": "/usr/bin:/bin"}),
                 job(command=["/bin/true"], env={"PATH": "/nonexistent"}),
                 job(command=["true"], env={"PATH": ""}),
                 job(command=None, shell="true", env={"PATH": "/nonexistent"}),
                 job(command=["true"], working_dir=str(tmp_path))):
        r = local.client.post("/v1/workloads", json=spec, headers=local.admin)
        assert r.status_code == 201, (spec, r.text)


def test_other_backends_leave_these_to_the_launch(api: Api) -> None:
    # their hosts are not this one: the launch refuses, failing that workload with the reason
    for spec in (job(command=["true"], working_dir="/nonexistent"),
                 job(command=["true"], env={"PATH": "/nonexistent"})):
        assert api.client.post("/v1/workloads", json=spec, headers=api.admin).status_code == 201
