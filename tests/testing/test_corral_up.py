"""The `corral up` harness: a first start whose port was taken in the meantime moves to another
port (several xdist workers start servers at once); a restart keeps its port and fails loudly;
its client's `wait` never pauses longer than TEST_MAX_POLL_S between polls."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from corral.sdk import models as M
from corral.testing import corral_up
from corral.testing.corral_up import CorralServer

pytestmark = pytest.mark.slow  # `corral up` started on a taken port: ~13 s


def test_a_first_start_on_a_taken_port_moves_to_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = CorralServer(tmp_path / "data", port=port)
        try:
            server.start()
            assert server.port != port
            with server.client() as client:
                assert client.health()
            assert "is already in use" in server.log()  # the first try did meet the taken port
            server.stop()
            assert server.proc is not None and server.proc.returncode is not None
            taken_again = server.port
            with socket.socket() as squatter:  # a restart must keep the port it handed out
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT
                squatter.bind(("127.0.0.1", taken_again))
                squatter.listen(1)
                with pytest.raises(RuntimeError, match="is already in use"):
                    server.start()
            assert server.port == taken_again
        finally:
            server.stop()


def test_the_clients_wait_polls_at_least_every_half_second(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that ends after 20 polls: the SDK's own interval would have grown to 2 s."""
    states = iter(["running"] * 20 + ["succeeded"])
    pauses: list[float] = []
    monkeypatch.setattr(corral_up.Client, "get", lambda self, wid: M.Workload.model_construct(
        id=wid, state=next(states)))
    monkeypatch.setattr(corral_up.time, "sleep", pauses.append)  # the SDK's module: same `time`
    with CorralServer(tmp_path / "data").client(token="t") as client:  # never started: no call
        assert client.wait("w-1", timeout_s=600).state == "succeeded"
    assert len(pauses) == 20 and max(pauses) == corral_up.TEST_MAX_POLL_S
