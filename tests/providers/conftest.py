from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.control.rig import Rig

from corral.store import Store
from corral.store.database import sqlite_url
from corral.testing.ec2 import MotoServer
from corral.testing.errors import HarnessUnavailable


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    try:
        server = MotoServer().start()
    except HarnessUnavailable as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ec2_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials for this test only, pointed at the moto server (reset first)."""
    moto.reset()
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    for key, value in moto.env.items():
        monkeypatch.setenv(key, value)
    return moto.env


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A control plane on a fake backend and a manual clock, on a fresh SQLite store."""
    store = Store(sqlite_url(tmp_path / "corral.db"))
    store.upgrade()
    yield Rig(store)
    store.close()
