"""Relayed `corral exec`, `corral port-forward` and `corral ssh` on the host
(`corral.api.agent_relay`).

The server orders them in the sync's answer (`SyncOut.execs`, `.tunnels`, `.shells`); each runs
on a thread of its own, so a 120 s exec or an hour-long forward or shell never holds the
agent's loop (its lease, its heartbeats). The host applies the local backend's rules to its own
processes: the command or shell gets the worker's environment, working directory and user
(`worker_exec`, `worker_shell`); a forward reaches only a port the worker's session listens on
(`worker_ports`), and always on 127.0.0.1.

A forward dials the server (hosts behind NAT work): a WebSocket to /agent/v1/tunnels/{id}
with the node credential; the first text message is "ok" or "refused <code> <why>", then the
TCP stream follows as binary messages (as `kubectl port-forward` through the API server).
A shell dials back the same way and carries its terminal (`ShellOrder`: the bytes as binary
messages, a resize as text, the exit status as text at the end); the server closing first (the
user left, or a session limit) hangs the shell up, as a dropped ssh connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.agent.protocol import ExecDone, ExecOrder, ShellOrder, TunnelOrder
from corral.backends.worker_exec import exec_beside, worker_pid
from corral.backends.worker_ports import listening_ports
from corral.backends.worker_shell import (
    ContainerGone,
    Shell,
    apply_control,
    exit_status,
    open_shell,
)

__all__ = ["Relayed", "run_exec"]

log = logging.getLogger("corral.agent")
CHUNK = 64 * 1024


def run_exec(work_dir: Path, order: ExecOrder) -> ExecDone:
    """Run one ordered exec beside its worker, as `corral exec` does on the local backend."""
    try:
        pid = worker_pid(work_dir, order.workload_id, order.attempt, order.worker)
    except LookupError as e:
        return ExecDone(error="conflict", message=str(e))
    try:
        done = exec_beside(pid, list(order.argv), timeout_s=order.timeout_s,
                           max_bytes=order.max_bytes)
    except FileNotFoundError:
        return ExecDone(error="invalid", message=f"program {order.argv[0]!r} is not found in "
                        "the worker's PATH")
    except PermissionError as e:
        return ExecDone(error="invalid", message=f"cannot run {order.argv[0]!r}: {e.strerror}")
    except OSError as e:  # the worker ended meanwhile
        return ExecDone(error="conflict", message=f"the worker ended: {e}")
    return ExecDone(exit_code=done.exit_code, stdout=done.stdout, stderr=done.stderr,
                    timed_out=done.timed_out, truncated=done.truncated)


class Relayed:
    """Starts a thread per order. `answer(order_id, done)` posts an exec's answer; the
    tunnel's WebSocket URL and headers come from `server` and `credential`."""

    def __init__(self, work_dir: Path, server: str, credential: Callable[[], str],
                 answer: Callable[[str, ExecDone], None]) -> None:
        self.work_dir, self.server, self.credential, self.answer = (
            work_dir, server.rstrip("/"), credential, answer)

    def start(self, execs: list[ExecOrder], tunnels: list[TunnelOrder],
              shells: list[ShellOrder] | None = None) -> None:
        for e in execs:
            threading.Thread(target=self._exec, args=(e,), name=f"exec-{e.id[:8]}",
                             daemon=True).start()
        for t in tunnels:
            threading.Thread(target=self._tunnel, args=(t,), name=f"tunnel-{t.id[:8]}",
                             daemon=True).start()
        for sh in shells or []:
            threading.Thread(target=self._shell, args=(sh,), name=f"shell-{sh.id[:8]}",
                             daemon=True).start()

    def _exec(self, order: ExecOrder) -> None:
        done = run_exec(self.work_dir, order)
        try:
            self.answer(order.id, done)
        except Exception as e:  # the server went away: the user's exec times out there
            log.warning("cannot answer exec %s: %s", order.id, e)

    def _dial(self, order_id: str, verdict: str, then: Callable[[Any], None] | None) -> None:
        """Dial the server back for the order, say the verdict, then carry the stream."""
        try:
            from websockets.sync.client import connect
        except ImportError:
            verdict = "refused 501 this host has no websockets package: pip install websockets"
            then = None
        url = self.server.replace("http", "ws", 1) + f"/agent/v1/tunnels/{order_id}"
        try:
            with connect(url, additional_headers={
                    "Authorization": f"Bearer {self.credential()}"},
                    open_timeout=10, max_size=None) as ws:
                ws.send(verdict)
                if then is not None:
                    then(ws)
        except Exception as e:
            log.warning("relayed stream %s ended: %s", order_id, e)

    def _tunnel(self, order: TunnelOrder) -> None:
        verdict, sock = self._target(order)
        try:
            self._dial(order.id, verdict,
                       None if sock is None else lambda ws: _pipe(ws, sock))
        finally:
            if sock is not None:
                sock.close()

    def _shell(self, order: ShellOrder) -> None:
        verdict, sh = self._open_shell(order)
        ended = [False]

        def carry(ws: Any) -> None:
            assert sh is not None
            ended[0] = _carry_terminal(ws, sh)

        try:
            self._dial(order.id, verdict, None if sh is None else carry)
        finally:
            if sh is not None and not ended[0]:  # the server left first: hang up
                sh.hang_up()
            elif sh is not None:
                with contextlib.suppress(OSError):
                    os.close(sh.master)

    def _open_shell(self, order: ShellOrder) -> tuple[str, Shell | None]:
        try:
            pid = worker_pid(self.work_dir, order.workload_id, order.attempt, order.worker)
        except LookupError as e:
            return f"refused 409 {e}", None
        try:
            return "ok", open_shell(pid, order.rows, order.cols)
        except ContainerGone as e:  # not running: the server's own 409 (corral.api.shell)
            return f"refused 409 {e}", None
        except OSError as e:
            return (f"refused 422 cannot start a shell in worker {order.worker}: "
                    f"{e.strerror or e}"), None

    def _target(self, order: TunnelOrder) -> tuple[str, socket.socket | None]:
        try:
            pid = worker_pid(self.work_dir, order.workload_id, order.attempt, order.worker)
        except LookupError as e:
            return f"refused 409 {e}", None
        ports = listening_ports(pid)
        if order.port not in ports:
            return (f"refused 403 worker {order.worker} of {order.workload_id} does not listen "
                    f"on port {order.port} (it listens on {sorted(ports) or 'none'})"), None
        try:
            return "ok", socket.create_connection(("127.0.0.1", order.port), timeout=10)
        except OSError as e:
            return f"refused 502 cannot connect to port {order.port}: {e.strerror}", None


def _pipe(ws: Any, sock: socket.socket) -> None:
    """Both ways until either side closes."""
    sock.settimeout(None)

    def down() -> None:  # worker -> server
        with contextlib.suppress(Exception):
            while data := sock.recv(CHUNK):
                ws.send(data)
        with contextlib.suppress(Exception):
            ws.close()

    reader = threading.Thread(target=down, daemon=True)
    reader.start()
    with contextlib.suppress(Exception):
        for message in ws:  # server -> worker
            sock.sendall(message if isinstance(message, bytes) else message.encode())
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    reader.join(timeout=5)


def _carry_terminal(ws: Any, sh: Shell) -> bool:
    """The terminal both ways until the shell ends (its status sent, then closed: True) or the
    server closes first (False: the caller hangs the shell up)."""
    ended = threading.Event()

    def down() -> None:  # shell -> server, then its status
        with contextlib.suppress(Exception):
            while True:
                try:
                    data = os.read(sh.master, CHUNK)
                except OSError:  # EIO: every process holding the terminal has ended
                    data = b""
                if not data:
                    break
                ws.send(data)
        code = exit_status(sh.proc.wait())
        ended.set()
        with contextlib.suppress(Exception):
            ws.send(json.dumps({"exit": code}))
            ws.close()

    reader = threading.Thread(target=down, daemon=True)
    reader.start()
    with contextlib.suppress(Exception):
        for message in ws:  # server -> shell: keys as bytes, a resize as text
            if isinstance(message, bytes):
                _write_all(sh.master, message)
            else:
                apply_control(sh.master, message)
    if ended.is_set():
        reader.join(timeout=5)
    return ended.is_set()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
