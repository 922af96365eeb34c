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
the event loop holding the GIL were in these writes. What a pass of the loop writes on a
connection now leaves in one send at the end of the pass (1,000 submissions: 1,180 writes by
the server, 2,123 before; strace). It wraps the transport uvicorn's protocol is given when the
connection opens (until issue 14's second pass it replaced the transport of uvicorn's request
cycle, a private attribute, once the headers were in).

    uvicorn.Config(app, **uvicorn_options(limits))
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from corral.api.limits import ApiLimits

__all__ = ["OneWrite", "guarded_protocol", "uvicorn_options"]

#: the largest request head h11 buffers (uvicorn's default is 16 KiB; httptools' own is 80 KiB)
MAX_HEADER_BYTES = 64 * 1024
#: held bytes sent at once, not at the end of the pass: a body streamed without a pause reaches
#: the socket's transport, whose buffer's high-water mark pauses the app (uvicorn's flow control)
HOLD_BYTES = 64 * 1024


class OneWrite:
    """A connection's transport that holds what is written during one pass of the event loop
    and sends it in one write at the end of the pass (sooner once `HOLD_BYTES` are held, and
    before a close or an EOF). Everything else is the transport's own.

    A response of the app (Starlette's `Response`) sends its head and body in one pass, so they
    leave in one send; a stream whose body comes later (the service gateway relaying a replica)
    has its head sent at the end of the pass, as before, not held until its first chunk. Bytes
    never wait longer than the pass that wrote them.

    It is given to uvicorn's protocol as the connection's transport in `connection_made` (the
    asyncio protocol interface), so it needs nothing of uvicorn's internals; a connection that
    becomes a WebSocket keeps it (its frames coalesce the same way)."""

    __slots__ = ("_held", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
            self._size = 0
        self._held.append(bytes(data))
        self._size += len(data)
        if self._size >= HOLD_BYTES:
            self._flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held = []
            if not self._transport.is_closing():  # the peer left: nothing to send to
                self._transport.write(data)

    def close(self) -> None:  # what was written goes first (an error answer, then the close)
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held, self._size = [], 0
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (self._size if self._held else 0)

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, set_protocol, ...
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
            loop = asyncio.get_running_loop()
            super().connection_made(cast(asyncio.Transport, OneWrite(transport, loop)))
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and self.cycle is not self._cycle:  # headers are in
                self._cycle = self.cycle
                self._disarm()

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
