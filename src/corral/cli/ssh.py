"""`corral ssh ID [--worker N]`: an interactive shell in a running worker (its environment, user
and working directory) on a terminal carried over one WebSocket through the control plane
(`/v1/workloads/{id}/shell`, wire in `corral.api.shell`). This terminal is put in raw mode so
every key (Ctrl-C, Ctrl-D, arrows) reaches the remote shell; its size goes along at the start
and on each SIGWINCH. Exits with the shell's status; 255 when the connection ends without one,
with the server's reason (e.g. the shell's idle or longest-session limit). Refused (exit 1): the
server's reason, and for work or a container that is not running (close code 4409) where to
look and when to try again."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
from typing import Annotated, Any

import typer
from rich.console import Console

from corral.cli.connection import TokenOpt, UrlOpt
from corral.sdk.config import resolve

__all__ = ["ssh"]

err = Console(stderr=True)
#: the server's close code for a workload or worker that is not running (HTTP 409 + 4000;
#: corral.api.websockets.CLOSE: the CLI imports no server code)
NOT_RUNNING = 4409


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdin.fileno())
    except OSError:  # not a terminal: the usual default
        return 24, 80
    return size.lines, size.columns


def _send_keys(ws: Any, resized: threading.Event, done: threading.Event) -> None:
    """Keystrokes and resizes, from one thread, so that SIGWINCH's handler only sets a flag
    (sending from a signal handler could interleave with this thread's send)."""
    from websockets.exceptions import ConnectionClosed

    fd = sys.stdin.fileno()
    with contextlib.suppress(OSError, ConnectionClosed):
        while not done.is_set():
            if resized.is_set():
                resized.clear()
                ws.send(json.dumps({"resize": list(_size())}))
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fd, 4096)
            if not data:  # input ended (a pipe): Ctrl-D to the shell, once
                ws.send(b"\x04")
                return
            ws.send(data)


@contextlib.contextmanager
def _raw_terminal() -> Any:
    """Raw mode while the session lasts, restored whatever happens."""
    fd = sys.stdin.fileno()
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSADRAIN)  # not TCSAFLUSH: keys typed ahead are kept
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _open(workload_id: str, worker: int, url: str | None, token: str | None) -> Any:
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect as ws_connect

    server, tok, _ = resolve(url, token)
    rows, cols = _size()
    ws_url = (server.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")
              + f"/v1/workloads/{workload_id}/shell?worker={worker}&rows={rows}&cols={cols}")
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    try:
        ws = ws_connect(ws_url, additional_headers=headers, max_size=None, open_timeout=10)
        try:
            if ws.recv(timeout=10) != "ok":
                raise WebSocketException("the server did not confirm the shell")
        except BaseException:
            ws.close()
            raise
    except (InvalidStatus, WebSocketException, OSError, TimeoutError) as e:
        close = getattr(e, "rcvd", None)
        reason = getattr(close, "reason", "") or str(e)
        err.print(f"[red]error:[/red] cannot open a shell in {workload_id}: {reason}",
                  markup=True, highlight=False)
        if getattr(close, "code", None) == NOT_RUNNING:
            err.print(f"a shell opens in a running worker only: `corral describe {workload_id}` "
                      "shows its state and why; try again once it runs", highlight=False)
        raise typer.Exit(1) from None
    return ws


def ssh(
    workload_id: str,
    worker: Annotated[int, typer.Option("--worker", "-w", help="which worker of the gang")] = 0,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """An interactive shell in a running worker; exits with the shell's status."""
    from websockets.exceptions import ConnectionClosed

    ws = _open(workload_id, worker, url, token)
    resized, done = threading.Event(), threading.Event()
    old = signal.signal(signal.SIGWINCH, lambda *_: resized.set())
    status = 255  # as ssh(1) when the connection is lost
    sender = threading.Thread(target=_send_keys, args=(ws, resized, done), daemon=True)
    with _raw_terminal():
        sender.start()
        with contextlib.suppress(ConnectionClosed):
            for message in ws:
                if isinstance(message, bytes):
                    os.write(sys.stdout.fileno(), message)
                else:
                    status = int(json.loads(message).get("exit", status))
        done.set()
    signal.signal(signal.SIGWINCH, old)
    ws.close()
    if status == 255:  # no status: the server's reason when it gave one (a session limit)
        reason = ws.close_reason or ""
        err.print(f"connection to {workload_id} closed" + (f": {reason}" if reason else ""),
                  highlight=False, soft_wrap=True)  # one line, whatever the width
    raise typer.Exit(status)
