from __future__ import annotations

from collections.abc import Iterator

import pytest

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
