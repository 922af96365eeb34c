"""Whose process listens on a service replica's port: a probe's answer counts only from its own.

A replica's port is 20000 + seq (`corral.control.endpoints.port_of`), the same seqs in every
store, so another `corral up` on the host, another tenant's worker or any other program can hold
it. A readiness GET (or TCP connect) at that port is then answered by that process, while the
replica itself cannot bind and crash-loops; counting that answer would mark the replica ready
and make the gateway send the service's traffic, and its clients' tokens, to the foreign
process. So before a passed probe counts, the prober asks the backend whether the replica's own
process tree listens on the port (`corral.backends.worker_ports.listening_ports`, what
port-forward already checks); when it does not, the replica is not ready and its row says who
holds the port (a PortInUse reason, `corral.control.probes`).

Where the check is made: on the local backend, here (the worker's pid from its runner record,
its session's sockets from /proc). Elsewhere (agent, Slurm, ...) the worker runs on another host
whose /proc the server cannot read: `port_owner` returns None and the probe is trusted as
before (not done: the agent would have to report its workers' listening ports).

Checked until the replica is first ready, not after: its own process then holds the port and no
other can bind it. Except (review R on b1fa38c): a server of the replica that sets SO_REUSEPORT
lets another socket of the same uid bind the same port and share its connections, and a server
that closes and reopens its listener while running (a reload) leaves a moment in which another
process can take the port; both go unseen until the replica restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from corral.backends.base import Backend
from corral.backends.worker_exec import worker_pid
from corral.backends.worker_ports import listening_ports, listening_sockets, socket_inodes
from corral.store.workloads import WorkloadRecord

__all__ = ["PortOwner", "holder_of", "local_port_owner", "port_owner"]

#: (replica row, its port) -> None when the replica's own process listens on the port, else
#: why its probe's answer does not count (naming the port and its holder)
PortOwner = Callable[[WorkloadRecord, int], str | None]


def port_owner(backend: Backend) -> PortOwner | None:
    """The check for `backend`'s replicas; None where the server cannot see the worker's host."""
    work_dir = getattr(backend, "work_dir", None)
    if backend.name == "local" and isinstance(work_dir, Path):
        return local_port_owner(work_dir)
    return None


def local_port_owner(work_dir: Path) -> PortOwner:
    """The check for replicas run by the local backend whose work directory is `work_dir`."""
    def check(rec: WorkloadRecord, port: int) -> str | None:
        try:
            pid = worker_pid(work_dir, rec.id, rec.attempt, 0)
        except LookupError:
            return (f"port {port} is held by another process ({holder_of(port)}); replica "
                    f"{rec.id} (attempt {rec.attempt}) has no live process on this host: not "
                    "ready, no traffic")
        if port in listening_ports(pid):
            return None
        return (f"port {port} is held by another process ({holder_of(port)}), not by replica "
                f"{rec.id}'s own process (pid {pid}): not ready, no traffic")
    return check


def holder_of(port: int) -> str:
    """Who listens on TCP `port` of this host, in words ("pid 123, python3"); only asked when
    a probe was answered by a foreign process, so a scan of /proc is fine here."""
    inodes = _listening_inodes(port)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and socket_inodes([int(entry.name)]) & inodes:
            return f"pid {entry.name}, {_name(entry)}"
    return "another process" if inodes else "a process (not visible here)"


def _listening_inodes(port: int) -> set[str]:
    return {inode for at, inode in listening_sockets() if at == port}


def _name(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip() or "?"
    except OSError:
        return "?"
