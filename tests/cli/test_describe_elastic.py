"""`corral describe ID` of an elastic job says its world now and its bounds, one line at 80
columns: the real CLI in a subprocess against the real API (uvicorn) over a store where a real
control loop (fake backend, tests/control/rig.py) grew the job from 2 to 4 workers."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.control.rig import Rig

from api.harness import build
from corral.store import Store

from .live_api import served


def test_describe_says_the_world_of_an_elastic_job(sqlite_store_url: str) -> None:
    store = Store(sqlite_store_url)
    store.upgrade()
    rig = Rig(store)
    api = build(store)
    blocker = rig.submit(name="blk", gpus=2, workers=3)  # only the core gang fits at first
    rig.step(2)
    job = rig.submit(name="el", elastic={"min_workers": 2, "max_workers": 4,
                                         "resize_interval": 30})
    rig.step(3)
    rig.backend.finish(blocker)
    rig.step(40)  # grown to 4: the second world
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")},
           "COLUMNS": "80"}
    try:
        with served(api.client.app) as url:
            out = subprocess.run(
                [sys.executable, "-m", "corral.cli.main", "describe", job, "--url", url,
                 "--token", api.admin["Authorization"].split()[1]],
                env=env, capture_output=True, text=True, timeout=60)
    finally:
        store.close()
    assert out.returncode == 0, out.stderr
    assert "  elastic    world of 4 workers (2 to 4 allowed), generation 2\n" in out.stdout
