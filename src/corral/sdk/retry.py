"""When the SDK sends a request again, and how long it waits first.

A request is sent again only when doing so cannot do the work twice:

    connect error, connect or pool timeout   never reached the server: any method
    429 Too Many Requests                     refused before it ran (the token's rate): any method
    503 Service Unavailable                   the server or a proxy in front could not take it
                                              (a replica without a backend, a restart): any method
    connection dropped while reading          GET, HEAD, PUT, DELETE, OPTIONS, or a request with
                                              an Idempotency-Key (a retry returns the first answer)

Waits grow as backoff_s, 2x, 4x ... up to max_backoff_s; a Retry-After from the server replaces
the computed wait, and one over max_retry_after_s is not waited for (the error goes to the
caller, RateLimited with its .retry_after) so a script is never parked for minutes unasked.
A read timeout is not retried: the server may still be working on it.

Worked example, the defaults (attempts=4, backoff_s=0.25): a server that is down costs waits of
0.25, 0.5 and 1 s (1.75 s) before ConnectionFailed; a 429 with Retry-After: 2 waits 2 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

__all__ = ["RETRIED_STATUSES", "Retries", "send_with_retries"]

RETRIED_STATUSES = frozenset({429, 503})
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_DROPPED = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class Retries:
    attempts: int = 4  # sends in all, the first one included; 1 turns retries off
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retries.attempts is {self.attempts}; it counts the first send "
                             "too, so write 1 to turn retries off")

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (0 for the first), without a Retry-After."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** retry))


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):  # absent, or an HTTP date: use the computed backoff
        return None


def _may_resend(error: httpx.TransportError, method: str, headers: Mapping[str, str]) -> bool:
    if isinstance(error, _NOT_SENT):
        return True
    keyed = any(name.lower() == "idempotency-key" for name in headers)
    return isinstance(error, _DROPPED) and (method.upper() in _IDEMPOTENT or keyed)


def send_with_retries(send: Callable[[], httpx.Response], retries: Retries, *, method: str,
                      headers: Mapping[str, str] | None = None) -> httpx.Response:
    """Call `send` (one request: `method`, with `headers`) until it gives a response that is
    not retried, or the attempts are spent: then the last response is returned, or the last
    error raised."""
    for retry in range(retries.attempts):
        last = retry == retries.attempts - 1
        try:
            response = send()
        except httpx.TransportError as e:
            if last or not _may_resend(e, method, headers or {}):
                raise
            retries.sleep(retries.backoff(retry))
            continue
        if response.status_code not in RETRIED_STATUSES or last:
            return response
        wait = _retry_after(response)
        if wait is not None and wait > retries.max_retry_after_s:
            return response  # longer than a caller would want to be parked: theirs to decide
        response.close()
        retries.sleep(retries.backoff(retry) if wait is None else wait)
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover
