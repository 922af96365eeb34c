"""Real TCP listeners that stand in for service replicas' ports, on ports no one else holds.

A replica's port is ``20000 + seq % 12768`` (corral.control.endpoints.port_of), and every test
store numbers its workloads from the same start, so every test that opened a listener on a
replica's own port used the same few ports as every other such test on the machine. Two runs
of those tests at once (two engineers' suites on one box, or a test in another xdist worker)
bound, closed and probed each other's listeners: a replica counted as ready a step late, or one
never opened accepted. Reproduced by running tests/control/test_service_rollout.py twice at once
(3 of 16 failed; alone: 16 passed).

``ReplicaListeners`` opens each listener on a kernel-given port instead and gives the control
loop's readiness prober a ``connect`` that maps a replica's port to its stand-in: still a real
TCP connection to a real listener (what the prober checks), but to one only this test holds. A
replica port the test did not open is refused, as on a machine where nothing listens there.
"""

from __future__ import annotations

import socket
from types import TracebackType

from corral.control.probes import tcp_connect

__all__ = ["ReplicaListeners"]


class ReplicaListeners:
    """Listeners for replica ports, opened by ``open`` and closed by ``close`` (or ``with``)."""

    def __init__(self) -> None:
        self._sockets: dict[int, socket.socket] = {}  # replica port -> its stand-in listener

    def open(self, *ports: int) -> None:
        for port in ports:
            if port in self._sockets:
                continue
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            self._sockets[port] = sock

    def connect(self, host: str, port: int, timeout_s: float) -> bool:
        """The prober's TCP check (corral.control.probes.TcpConnect) of replica port ``port``."""
        sock = self._sockets.get(port)
        return sock is not None and tcp_connect(host, sock.getsockname()[1], timeout_s)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def __enter__(self) -> ReplicaListeners:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
