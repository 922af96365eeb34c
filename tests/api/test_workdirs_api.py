"""/v1/workdirs: an archive is uploaded once by its digest (over the 1 MiB body limit), a body
that does not match is a 422 naming workdir, and the agent backend takes `workdir: sha256:...`
but refuses a path its hosts would not see."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.harness import Api, build, job
from corral.backends.workdir import WorkdirArchives
from corral.sdk.workdirs import pack
from corral.store import Store
from corral.store.database import sqlite_url


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Api:
    api = build(store, backend_name="agent")
    api.client.app.state.workdirs = WorkdirArchives(tmp_path / "workdirs")  # as corral up
    return api


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('hi')\n")
    (src / "weights.bin").write_bytes(os.urandom(3 * 2**20))  # a body over 1 MiB
    return src


def test_an_archive_is_uploaded_once_and_found_by_its_digest(api: Api, tmp_path: Path) -> None:
    assert api.client.get("/v1/workdirs", headers=api.ann).json()["upload"] is True
    data, digest = pack(_src(tmp_path))
    assert api.client.get(f"/v1/workdirs/{digest}", headers=api.ann).status_code == 404
    put = api.client.put(f"/v1/workdirs/{digest}", content=data, headers=api.ann)
    assert put.status_code == 201, put.text
    assert put.json()["created"] is True
    again = api.client.put(f"/v1/workdirs/{digest}", content=data, headers=api.ann)
    assert again.json()["created"] is False
    assert api.client.get(f"/v1/workdirs/{digest}", headers=api.ann).status_code == 200
    sub = api.client.post("/v1/workloads", json=job(workdir=digest), headers=api.ann)
    assert sub.status_code == 201, sub.text


def test_a_body_that_does_not_match_is_a_422_naming_workdir(api: Api, tmp_path: Path) -> None:
    data, digest = pack(_src(tmp_path))
    got = api.client.put(f"/v1/workdirs/{digest}", content=data[:-10], headers=api.ann)
    assert got.status_code == 422, got.text
    assert got.json()["problems"][0]["field"] == "workdir"
    bad = api.client.put("/v1/workdirs/sha256:xyz", content=b"x", headers=api.ann)
    assert bad.status_code == 422
    assert api.client.put(f"/v1/workdirs/{digest}", content=data).status_code == 401


def test_the_agent_backend_refuses_a_path_and_the_local_one_an_upload(
        store: Store, tmp_path: Path) -> None:
    api = build(store, backend_name="agent")
    got = api.client.post("/v1/workloads", json=job(workdir=str(tmp_path)), headers=api.ann)
    assert got.status_code == 422, got.text
    (problem,) = got.json()["problems"]
    assert problem["field"] == "workdir" and "corral submit FILE" in problem["message"]
    other = Store(sqlite_url(tmp_path / "local.db"))
    other.upgrade()
    local = build(other, backend_name="local")
    up = local.client.post("/v1/workloads", json=job(workdir="sha256:" + "a" * 64),
                           headers=local.ann)
    assert up.status_code == 422 and "absolute path" in up.text
    assert local.client.get("/v1/workdirs", headers=local.ann).json()["upload"] is False
    other.close()


def test_a_new_upload_prunes_unused_archives_but_never_one_a_workload_needs(
        api: Api, tmp_path: Path) -> None:
    """The server's archives are a bounded cache (corral.backends.workdir_cache): here every
    archive is over the size limit and old enough to go, yet the one a pending workload names
    stays; the unreferenced one goes; a finished workload's archive no longer protects it."""
    from corral.backends.workdir_cache import CacheLimits

    archives = WorkdirArchives(tmp_path / "workdirs", CacheLimits(max_bytes=1, min_age_s=0))
    api.client.app.state.workdirs = archives
    digests = []
    for name in ("one", "two", "three"):
        src = tmp_path / name
        src.mkdir()
        (src / "f.txt").write_text(name)
        data, digest = pack(src)
        digests.append(digest)
        if name == "one":  # named by a pending workload before the others arrive
            assert api.client.put(f"/v1/workdirs/{digest}", content=data,
                                  headers=api.ann).status_code == 201
            sub = api.client.post("/v1/workloads", json=job(workdir=digest), headers=api.ann)
            assert sub.status_code == 201, sub.text
            wid = sub.json()["workloads"][0]["id"]
        else:
            assert api.client.put(f"/v1/workdirs/{digest}", content=data,
                                  headers=api.ann).status_code == 201
    one, two, three = digests
    assert archives.has(one) and not archives.has(two) and archives.has(three)
    assert api.client.post(f"/v1/workloads/{wid}/cancel", headers=api.ann).status_code == 200
    src = tmp_path / "four"
    src.mkdir()
    (src / "f.txt").write_text("four")
    data, four = pack(src)
    api.client.put(f"/v1/workdirs/{four}", content=data, headers=api.ann)
    assert not archives.has(one) and archives.has(four)  # cancelled: no longer protected
