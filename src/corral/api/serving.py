"""How uvicorn serves the API with its limits (header read timeout, keep-alive, header size), and
a response sent in one write.

uvicorn has no timeout on reading a request's headers: its keep-alive timer runs only between
requests, and every byte received cancels it, so a client sending a header byte every few
seconds (or opening a connection and sending nothing) holds it forever. `header_deadline` adds
one: armed when a connection opens and whenever it waits for the next request, disarmed once a
request's headers are complete (the request then runs, and its body is bounded by
`corral.api.guard`). On expiry the connection is closed. It uses no private part of uvicorn:
the asyncio protocol interface, a context variable and a pure ASGI wrapper (uvicorn 0.55 has
no header timeout of its own: `timeout_keep_alive` is reset by every byte received, and
`h11_max_incomplete_event_size` bounds the header's size, not its time).

`OneWrite`: uvicorn writes a response's head when the app starts it and its body in a second
write, so each response was two sends on the socket, and the client woke twice to read it. On
loopback a send runs the receiver's TCP path (and may wake it) inside the sender's system call:
in a py-spy profile of `POST /v1/workloads` at 16 clients (issue 14), 27% of the samples with
the event loop holding the GIL were in these writes. What a pass of the loop writes on a
connection now leaves in one send at the end of the pass (1,000 submissions: 1,180 writes by
the server, 2,123 before; strace). It wraps the transport uvicorn's protocol is given when the
connection opens (until issue 14's second pass it replaced the transport of uvicorn's request
cycle, a private attribute, once the headers were in).

    uvicorn_config(app, limits, host=..., port=...)
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral.api.limits import ApiLimits

__all__ = ["OneWrite", "header_deadline", "uvicorn_config", "uvicorn_options"]

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


class _Deadline:
    """One connection's header timer: closes its transport when it expires."""

    __slots__ = ("_loop", "_timeout_s", "_timer", "_transport")

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport,
                 timeout_s: float) -> None:
        self._loop, self._transport, self._timeout_s = loop, transport, timeout_s
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.disarm()
        self._timer = self._loop.call_later(self._timeout_s, self._expired)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self._transport.is_closing():
            self._transport.close()


#: the deadline of the connection whose bytes uvicorn is parsing: set around each
#: `data_received`, so an ASGI task started there (its headers are complete) carries it in its
#: context (asyncio copies the context into a task when it is created)
_CONNECTION: ContextVar[_Deadline | None] = ContextVar("corral_header_deadline", default=None)


def header_deadline(app: ASGIApp, header_timeout_s: float
                    ) -> tuple[ASGIApp, type[asyncio.Protocol]]:
    """The app and uvicorn's HTTP protocol (httptools when installed, else h11) with a deadline
    on each request's headers; use both together (`uvicorn_config`).

    The protocol uses only the asyncio protocol interface (`connection_made`, `data_received`,
    `connection_lost`): it arms the deadline when a connection opens and marks the bytes it
    passes on with the connection (a context variable). The app (pure ASGI) is called once a
    request's headers are complete: it disarms the deadline, and arms it again when its response
    is sent (the next request's headers get the same time); a WebSocket is never re-armed (the
    deadline closed every `corral ssh`, port-forward and agent tunnel 10 s after it opened).
    Until issue 14's third pass the protocol read uvicorn's `cycle`, a private attribute."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # no httptools: the pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class HeaderDeadline(Base):
        _deadline: _Deadline | None = None

        def connection_made(self, transport: Any) -> None:
            loop = asyncio.get_running_loop()
            self._deadline = _Deadline(loop, transport, header_timeout_s)
            super().connection_made(cast(asyncio.Transport, OneWrite(transport, loop)))
            self._deadline.arm()

        def data_received(self, data: bytes) -> None:
            token = _CONNECTION.set(self._deadline)
            try:
                super().data_received(data)
            finally:
                _CONNECTION.reset(token)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.disarm()
            super().connection_lost(exc)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        deadline = _CONNECTION.get()
        if deadline is None or scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        deadline.disarm()  # this request's headers are in
        if scope["type"] == "websocket":  # never armed again: it lives as long as it is used
            await app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                deadline.arm()

        await app(scope, receive, sending)

    return guarded, HeaderDeadline


def uvicorn_config(app: ASGIApp, limits: ApiLimits, **options: Any) -> Any:
    """`uvicorn.Config` for `app` with the API's limits (header deadline, keep-alive, header
    size) and `options` (host, port, log level...)."""
    import uvicorn

    guarded, protocol = header_deadline(app, limits.header_timeout_s)
    return uvicorn.Config(guarded, **uvicorn_options(limits, protocol), **options)


def uvicorn_options(limits: ApiLimits, protocol: type[asyncio.Protocol]) -> dict[str, Any]:
    return {"http": protocol,
            "timeout_keep_alive": max(1, round(limits.keep_alive_s)),
            "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
