"""The packaging fields' rules in the spec: each bad value refused naming the field and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from corral.spec import SpecError, WorkloadSpec


def parse_workload(data: dict) -> WorkloadSpec:
    try:
        return WorkloadSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError.from_validation(exc) from None

BASE = {"name": "t", "queue": "q", "command": ["python", "t.py"]}


@pytest.mark.parametrize(("fields", "where", "says"), [
    ({"image": "has space:1"}, "image", "not a container image reference"),
    ({"image": "ubuntu:22.04;rm -rf /"}, "image", "registry/]name[:tag]"),
    ({"image": "x" * 600}, "image", "not a container image reference"),
    ({"workdir": "src"}, "workdir", "absolute path"),
    ({"setup": "   "}, "setup", "must not be blank"),
    ({"setup": 5}, "setup", "string"),
    ({"env": {"T": {"secret": "Bad Name"}}}, "env.T.secret", "secret's name"),
    ({"env": {"T": {"secret": "ok", "extra": 1}}}, "env.T.extra", "unknown field"),
    ({"env": {"T": {"value": "x"}}}, "env.T.secret", "required"),
    ({"env": {"T": 5}}, "env.T", "not the number 5: put the value in quotes"),
], ids=["image-space", "image-shell", "image-long", "workdir-relative", "setup-blank",
        "setup-number", "secret-name", "secret-extra", "secret-missing-key", "number"])
def test_bad_packaging_values_name_the_field(fields: dict, where: str, says: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_workload({**BASE, **fields})
    assert any(path.startswith(where) and says.lower() in msg.lower()
               for path, msg in e.value.problems), e.value.problems


@pytest.mark.parametrize("image", [
    "ubuntu", "ubuntu:22.04", "python:3.11-slim", "nvcr.io/nvidia/pytorch:24.05-py3",
    "registry.example.com:5000/team/model-server:v1.2",
    "ghcr.io/org/img@sha256:" + "a" * 64])
def test_image_references_people_write_are_accepted(image: str) -> None:
    assert parse_workload({**BASE, "image": image}).image == image


def test_env_splits_into_values_and_secret_references() -> None:
    spec = WorkloadSpec.model_validate({**BASE, "env": {"A": "1", "T": {"secret": "tok"}}})
    assert (spec.plain_env(), spec.secret_refs()) == ({"A": "1"}, {"T": "tok"})
    stored = WorkloadSpec.from_stored(spec.model_dump(mode="json"))
    assert stored.secret_refs() == {"T": "tok"}


@pytest.mark.parametrize(("volumes", "where", "says"), [
    ([{"name": "d", "mount": "/d"}], "volumes[0]", "exactly one of host_path"),
    ([{"name": "d", "mount": "/d", "host_path": "/h", "claim": "c"}], "volumes[0]",
     "exactly one"),
    ([{"name": "d", "mount": "rel", "host_path": "/h"}], "volumes[0].mount", "absolute"),
    ([{"name": "d", "mount": "/d:/x", "host_path": "/h"}], "volumes[0].mount", "':'"),
    ([{"name": "D_x", "mount": "/d", "host_path": "/h"}], "volumes[0].name", "lowercase"),
    ([{"name": "d", "mount": "/d", "host_path": "/h"}, {"name": "d", "mount": "/e",
                                                        "host_path": "/h"}], "volumes",
     "share a name"),
    ([{"name": "d", "mount": "/d", "host_path": "/h"}, {"name": "e", "mount": "/d/",
                                                        "host_path": "/h"}], "volumes",
     "share a mount"),
], ids=["no-source", "two-sources", "relative-mount", "colon", "bad-name", "same-name",
        "same-mount"])
def test_bad_volumes_name_the_field(volumes: list, where: str, says: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_workload({**BASE, "volumes": volumes})
    assert any(path.startswith(where) and says.lower() in msg.lower()
               for path, msg in e.value.problems), e.value.problems


def test_shm_size_is_a_size() -> None:
    assert parse_workload({**BASE, "shm_size": "8GiB"}).shm_size == 8192
    with pytest.raises(SpecError, match="shm_size"):
        parse_workload({**BASE, "shm_size": "lots"})
