"""One real `corral up` (local backend, the virtual pool) shared by the end-to-end modules here
(exec, secrets, webhooks, workflows): each adds work, secrets and hooks of its own, reads them
back by their ids and cancels what it left running, so they need not start and stop a server
each (~6-10 s a server on the 2-core CI box)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.testing.corral_up import CorralServer, stop_workers


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    # the webhook tests' receivers listen on loopback, which a server refuses unless its
    # setting allows it
    srv = CorralServer(tmp_path_factory.mktemp("corral-integration"),
                       extra_env={"CORRAL_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}).start()
    try:
        yield srv
    finally:
        srv.stop()
        stop_workers(srv.data_dir)
