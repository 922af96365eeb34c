"""`corral port-forward ID [LOCAL:]PORT [--worker N]`: reach a port a running worker listens on
(a notebook, TensorBoard, a debug server) at 127.0.0.1:LOCAL on this machine, through the
control plane: each connection is carried over its own WebSocket
(`/v1/workloads/{id}/port-forward`), as `kubectl port-forward` does. Runs until Ctrl-C.

A connection the server closes with a reason (its idle or longest-forward limit, code 4408)
is said on stderr, one line per connection, as `corral ssh` says it: otherwise the local
client only sees its socket end and cannot tell a limit from the worker hanging up."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Annotated

import typer
from rich.console import Console

from corral.cli.connection import TokenOpt, UrlOpt
from corral.sdk.config import resolve

__all__ = ["port_forward"]

err = Console(stderr=True)


def _ports(spec: str) -> tuple[int, int]:
    local, _, remote = spec.rpartition(":")
    try:
        r = int(remote)
        lo = int(local) if local else r
    except ValueError:
        raise typer.BadParameter(f"{spec!r}: give PORT or LOCAL:PORT (numbers)") from None
    if not (0 <= lo <= 65535 and 1 <= r <= 65535):
        raise typer.BadParameter(f"{spec!r}: ports are 1-65535 (LOCAL 0: any free port)")
    return lo, r


def closed_line(workload_id: str, code: int | None, reason: str | None) -> str | None:
    """The line to print when the server ended a forwarded connection, or None when the
    connection ended normally (either side hung up: 1000 and no reason) or is still open."""
    if code is None or (code == 1000 and not reason):
        return None
    return f"connection to {workload_id} closed" + (f": {reason}" if reason else f" (code {code})")


def _pipe(conn: socket.socket, ws: object, workload_id: str) -> None:
    from websockets.exceptions import ConnectionClosed

    def up() -> None:
        with contextlib.suppress(OSError, ConnectionClosed):
            while data := conn.recv(65536):
                ws.send(data)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            ws.close()  # type: ignore[attr-defined]

    t = threading.Thread(target=up, daemon=True)
    t.start()
    with contextlib.suppress(OSError, ConnectionClosed):
        for message in ws:  # type: ignore[attr-defined]
            conn.sendall(message if isinstance(message, bytes) else message.encode())
    # said before the local socket ends, so whoever sees the end can read why (None while the
    # WebSocket is still open: the local client left first, and `up` closes it normally)
    line = closed_line(workload_id, ws.close_code, ws.close_reason)  # type: ignore[attr-defined]
    if line is not None:
        err.print(line, highlight=False, soft_wrap=True)  # one line, whatever the width
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def port_forward(
    workload_id: str,
    ports: Annotated[str, typer.Argument(help="PORT, or LOCAL:PORT (LOCAL 0: any free port)")],
    worker: Annotated[int, typer.Option("--worker", "-w", help="which worker of the gang")] = 0,
    url: UrlOpt = None, token: TokenOpt = None,
) -> None:
    """Forward 127.0.0.1:LOCAL here to PORT of a running worker, until Ctrl-C."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect as ws_connect

    local, remote = _ports(ports)
    server, tok, _ = resolve(url, token)
    ws_url = (server.replace("https://", "wss://", 1).replace("http://", "ws://", 1).rstrip("/")
              + f"/v1/workloads/{workload_id}/port-forward?port={remote}&worker={worker}")
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}

    def open_ws() -> object:
        ws = ws_connect(ws_url, additional_headers=headers, max_size=None, open_timeout=10)
        try:
            if ws.recv(timeout=10) != "ok":  # the server's word that the port is connected
                raise WebSocketException("the server did not confirm the forward")
        except BaseException:
            ws.close()
            raise
        return ws

    try:  # one connection first: a refusal is said at once, not at the first client
        open_ws().close()  # type: ignore[attr-defined]
    except (InvalidStatus, WebSocketException, OSError, TimeoutError) as e:
        reason = getattr(getattr(e, "rcvd", None), "reason", "") or str(e)
        err.print(f"[red]error:[/red] cannot forward to port {remote} of {workload_id}: "
                  f"{reason}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    listener = socket.create_server(("127.0.0.1", local))
    bound = listener.getsockname()[1]
    print(f"Forwarding from 127.0.0.1:{bound} -> {workload_id} worker {worker} port {remote}",
          flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            try:
                ws = open_ws()
            except (WebSocketException, OSError, TimeoutError) as e:
                err.print(f"connection refused by the server: {e}", highlight=False)
                conn.close()
                continue
            threading.Thread(target=_pipe, args=(conn, ws, workload_id), daemon=True).start()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
