"""A request's body on its way through the gateway: whether it has one, and holding it so that
another try can send it again.

`RequestBody` streams the client's body to the replica as it arrives and keeps it, up to the
service's replay buffer, so a retry can replay it (Envoy's per_request_buffer_limit_bytes); a body
that outgrows the buffer is dropped from memory and its request is never retried. Whether a body
exists is read from the headers under HTTP/1.x, and from the first message under HTTP/2 and 3,
which frame bodies themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientGone", "RequestBody", "body_declared", "declared_length", "framing_unknown",
           "header_value", "peek_body"]

Scope = dict[str, Any]


class ClientGone(Exception):
    """The client went away before its request body ended, or (a WebSocket) before the upgrade."""


@dataclass
class RequestBody:
    """The client's request body, streamed to the replica as it arrives, and held (up to
    `limit` bytes) so that another try can send it again: a replay yields what was held, then
    goes on receiving. Once it outgrows `limit` it is dropped and the body is not replayable."""

    receive: Any
    has_body: bool
    limit: int = 0
    #: called once when the body outgrows `limit` (the metric that counts it)
    on_overflow: Callable[[], None] | None = None
    #: the body's Content-Length, when the client sent one
    declared: int | None = None
    started: bool = False
    ended: bool = field(init=False)
    held: list[bytes] = field(default_factory=list)
    size: int = 0
    overflowed: bool = False

    def __post_init__(self) -> None:
        self.ended = not self.has_body
        if self.has_body and self.declared is not None and self.declared > self.limit:
            self._overflow()  # known too big from its header: nothing is held, from the start

    @property
    def replayable(self) -> bool:
        return not self.has_body or not self.overflowed

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in list(self.held):  # a replay: what the failed try already sent
            yield chunk
        while not self.ended:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            self.started = True
            self.ended = not message.get("more_body", False)
            chunk = message.get("body")
            if chunk:
                self._hold(chunk)
                yield chunk

    def _hold(self, chunk: bytes) -> None:
        if self.overflowed:
            return
        self.size += len(chunk)
        if self.size > self.limit:  # too big to hold: this request is not retried
            self._overflow()
        else:
            self.held.append(chunk)

    def _overflow(self) -> None:
        self.overflowed, self.held = True, []
        if self.on_overflow is not None:
            self.on_overflow()

    def retry_off(self) -> list[tuple[bytes, bytes]]:
        """The response header that says this request was never replayable, or none."""
        if not self.overflowed:
            return []
        return [(b"x-corral-retry-off", f"body_over_limit; limit={self.limit}".encode())]


def body_declared(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def framing_unknown(scope: Scope) -> bool:
    """HTTP/2 and 3 frame a request body themselves: it may come with neither Content-Length
    nor Transfer-Encoding (RFC 9113, 8.1), so their absence does not say "no body" there."""
    return scope.get("http_version", "1.1") not in ("1.0", "1.1") \
        and header_value(scope, b"content-length") is None


async def peek_body(receive: Any) -> tuple[bool, Any]:
    """(whether the request has a body, a receive that yields the message read to know it
    first). An HTTP/2 request without a body ends its stream with its headers, so its first
    message is an empty, final one at once."""
    first = await receive()
    if first["type"] == "http.disconnect":
        raise ClientGone
    if not first.get("body") and not first.get("more_body", False):
        return False, receive
    pending = [first]

    async def replay() -> Any:
        return pending.pop() if pending else await receive()
    return True, replay


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length (the server has already refused a malformed one)."""
    value = header_value(scope, b"content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def header_value(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)
