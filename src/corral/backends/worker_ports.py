"""`corral port-forward`: which TCP ports a running worker of the local backend listens on.

A forward may reach only a port that the worker's own processes (its session: the command and
whatever it started, a notebook's kernels too) hold open for listening; never another port of
the host (the API, the database, another tenant's worker), which would make the control plane
a way into them. Read from Linux's /proc: the sockets each process of the session holds
(`/proc/<pid>/fd -> socket:[inode]`) against the listening sockets of `/proc/net/tcp{,6}`.

A worker of an `image:` is `podman run` (`worker_exec.container_of`), whose container runs under
podman's conmon, outside the worker's session: its processes are those in the container's pid
namespace (the one of its init, `podman container inspect --format {{.State.Pid}}`). Its
sockets are in the host's tables all the same (`--network=host`, `corral.backends.containers`),
so the forward connects to 127.0.0.1 as for a host process.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from corral.backends.worker_exec import _environ, container_of

__all__ = ["listening_ports", "listening_sockets", "socket_inodes"]

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


def _container_pids(pid: int) -> list[int]:
    """The processes of the container that `podman run` process `pid` runs; [] when it is not
    running (yet, or any more) or is no container."""
    box = container_of(pid)
    if box is None:
        return []
    try:
        st = os.stat(f"/proc/{pid}")
        owner = st if os.geteuid() == 0 and st.st_uid != 0 else None  # podman as the worker's
        init = subprocess.run([*box[0], "container", "inspect", "--format", "{{.State.Pid}}",
                               box[1]], env=_environ(pid), capture_output=True, text=True,
                              timeout=30, check=False, user=owner and owner.st_uid,
                              group=owner and owner.st_gid,
                              extra_groups=[] if owner else None).stdout.strip()
        space = os.readlink(f"/proc/{int(init)}/ns/pid")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    if space == os.readlink("/proc/self/ns/pid"):  # --pid=host: never every host process
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == space:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def socket_inodes(pids: list[int]) -> set[str]:
    """The inodes of the sockets processes `pids` hold open (those readable here)."""
    inodes = set()
    for p in pids:
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:  # gone, or another user's: not readable here
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
    """The TCP ports the session of process `pid` listens on (IPv4 and IPv6); with those of
    its container when it is an `image:` worker."""
    inodes = socket_inodes(_session_pids(pid) + _container_pids(pid))
    return {port for port, inode in listening_sockets() if inode in inodes}


def listening_sockets() -> Iterator[tuple[int, str]]:
    """(port, socket inode) of every listening TCP socket this host's network namespace shows
    (IPv4 and IPv6, /proc/net/tcp{,6}); a table that cannot be read is skipped."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == _LISTEN:
                yield int(cols[1].rsplit(":", 1)[1], 16), cols[9]
