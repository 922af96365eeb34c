"""`corral port-forward`: which TCP ports a running worker of the local backend listens on.

A forward may reach only a port that the worker's own processes (its session: the command and
whatever it started, a notebook's kernels too) hold open for listening; never another port of
the host (the API, the database, another tenant's worker), which would make the control plane
a way into them. Read from Linux's /proc: the sockets each process of the session holds
(`/proc/<pid>/fd -> socket:[inode]`) against the listening sockets of `/proc/net/tcp{,6}`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["listening_ports"]

_LISTEN = "0A"


def _session_pids(pid: int) -> list[int]:
    sid = os.getsid(pid)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return found


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for p in pids:
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def listening_ports(pid: int) -> set[int]:
    """The TCP ports the session of process `pid` listens on (IPv4 and IPv6)."""
    inodes = _socket_inodes(_session_pids(pid))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _LISTEN and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports
