"""How uvicorn serves the API with its limits: header read timeout, keep-alive, header size.

uvicorn has no timeout on reading a request's headers: its keep-alive timer runs only between
requests, and every byte received cancels it, so a client sending a header byte every few
seconds (or opening a connection and sending nothing) holds it forever. `HeaderDeadline` adds
one: armed when a connection opens and whenever it waits for the next request, disarmed once a
request's headers are complete (the request then runs, and its body is bounded by
`corral.api.guard`). On expiry the connection is closed.

    uvicorn.Config(app, **uvicorn_options(limits))
"""

from __future__ import annotations

import asyncio
from typing import Any

from corral.api.limits import ApiLimits

__all__ = ["guarded_protocol", "uvicorn_options"]

#: the largest request head h11 buffers (uvicorn's default is 16 KiB; httptools' own is 80 KiB)
MAX_HEADER_BYTES = 64 * 1024


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
