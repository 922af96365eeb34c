"""The packaging fields reach the launch: setup, image, volumes (with CORRAL_VOLUME_<NAME> in
the environment) and shm_size, from the stored spec through the control loop."""

from __future__ import annotations

import pytest

from corral.store import Store

from .rig import Rig


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def test_packaging_fields_reach_the_launch_spec(rig: Rig) -> None:
    rig.submit(setup="make deps", image="ubuntu:22.04", shm_size="1GiB", volumes=[
        {"name": "train-data", "host_path": "/mnt/d", "mount": "/data", "read_only": True}])
    rig.step(2)
    [launched] = rig.backend.launches
    assert (launched.setup, launched.image, launched.shm_mib) == ("make deps", "ubuntu:22.04",
                                                                  1024)
    assert launched.volumes == ({"name": "train-data", "mount": "/data", "host_path": "/mnt/d",
                                 "claim": None, "read_only": True},)
    assert launched.env["CORRAL_VOLUME_TRAIN_DATA"] == "/data"
