"""The `corral up` harness: a first start whose port was taken in the meantime moves to another
port (several xdist workers start servers at once); a restart keeps its port and fails loudly."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from corral.testing.corral_up import CorralServer


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
