"""How uvicorn serves the API with its limits (header read timeout, keep-alive, header size), and
a response sent in one write.

uvicorn has no timeout on reading a request's headers: its keep-alive timer runs only between
requests, and every byte received cancels it, so a client sending a header byte every few
seconds (or opening a connection and sending nothing) holds it forever. `HeaderDeadline` adds
one: armed when a connection opens and whenever it waits for the next request, disarmed once a
request's headers are complete (the request then runs, and its body is bounded by
`corral.api.guard`). On expiry the connection is closed.

`OneWrite`: uvicorn writes a response's head when the app starts it and its body in a second
write, so each response was two sends on the socket, and the client woke twice to read it. On
loopback a send runs the receiver's TCP path (and may wake it) inside the sender's system call:
in a py-spy profile of `POST /v1/workloads` at 16 clients (issue 14), 27% of the samples with
the event loop holding the GIL were in these writes. The head is now held until the body's
first write in the same pass of the loop: the same bytes, one send (1,000 submissions: 1,180
writes by the server, 2,123 before; strace).

    uvicorn.Config(app, **uvicorn_options(limits))
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from corral.api.limits import ApiLimits

__all__ = ["OneWrite", "guarded_protocol", "uvicorn_options"]

#: the largest request head h11 buffers (uvicorn's default is 16 KiB; httptools' own is 80 KiB)
MAX_HEADER_BYTES = 64 * 1024


class OneWrite:
    """A request cycle's transport that holds the response head until the cycle's next write
    or the end of this pass of the event loop, whichever comes first, and writes it with that
    write. Everything else is the connection's transport's.

    A response of the app (Starlette's `Response`) sends its head and its body in one pass, so
    they go in one send. A stream whose body comes later (the service gateway relaying a
    replica) still has its head written at the end of the pass, as before, not held until its
    first chunk; so does a head without a body (HEAD requests). An informational `100
    Continue` is passed through."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._head: bytes | None = None  # held; b"" once it has been written

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._head is None and not bytes(data[:10]).startswith(b"HTTP/1.1 1"):
            self._head = bytes(data)  # the head: held for the body
            self._loop.call_soon(self._flush)
            return
        if self._head:
            data, self._head = self._head + bytes(data), b""
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head:
            self._transport.write(self._head)
            self._head = b""

    def close(self) -> None:  # an app that failed after its head: the head, then the close
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...
        return getattr(self._transport, name)


def guarded_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) with `HeaderDeadline`."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # no httptools: the pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class HeaderDeadline(Base):
        _timer: asyncio.TimerHandle | None = None
        _cycle: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and self.cycle is not self._cycle:  # headers are in
                self._cycle = self.cycle
                self._disarm()
                # its app runs from the next pass of the loop: nothing was written yet
                self.cycle.transport = cast(asyncio.Transport, OneWrite(self.transport, self.loop))

        def handle_websocket_upgrade(self, *args: Any) -> None:
            # the connection becomes a WebSocket (another protocol object): its headers are
            # in, and the deadline must not close it later (it closed every `corral ssh`,
            # port-forward and agent tunnel 10 s after it opened)
            self._disarm()
            super().handle_websocket_upgrade(*args)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # a pipelined request already parsed runs now: its headers are in
            if not self.transport.is_closing() and not getattr(self, "pipeline", None):
                self._arm()  # the next request's headers get the same time

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def uvicorn_options(limits: ApiLimits) -> dict[str, Any]:
    return {"http": guarded_protocol(limits.header_timeout_s),
            "timeout_keep_alive": max(1, round(limits.keep_alive_s)),
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
