"""Errors the SDK raises, by what the caller can do about them::

    CorralError                     base; .status, .code, .message, .problems [(field, message)]
    ├── ConnectionFailed            the server cannot be reached
    ├── Unauthorized     (401)      no token, or an unknown or revoked one
    ├── Forbidden        (403)      the token's user may not do this
    ├── NotFound         (404)      no such object, or not visible to this user
    ├── Conflict         (409)      the object's state forbids it (cancel a finished workload),
    │                               or an Idempotency-Key was reused for another spec
    ├── InvalidRequest   (400, 405, 422)  the request itself is wrong: see .problems
    │   └── TooLarge     (413)      the body or the spec is over the server's limit
    ├── RateLimited      (429)      this token's request rate is used up: .retry_after seconds
    ├── Timeout          (408)      the server gave up waiting for the request body
    └── ServerError      (5xx)      the server failed; retrying may help; code `not_corral`:
                                    the answer is not corral's API (another service on that
                                    port, a proxy's page, a server of another version)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the annotation: `from corral.sdk import CorralError` needs no httpx
    import httpx

__all__ = [
    "Conflict",
    "ConnectionFailed",
    "CorralError",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "ServerError",
    "Timeout",
    "TooLarge",
    "Unauthorized",
    "from_response",
]


class CorralError(Exception):
    def __init__(self, message: str, *, status: int = 0, code: str = "",
                 problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.problems = message, status, code, list(problems)


class ConnectionFailed(CorralError):
    pass


class Unauthorized(CorralError):
    pass


class Forbidden(CorralError):
    pass


class NotFound(CorralError):
    pass


class Conflict(CorralError):
    pass


class InvalidRequest(CorralError):
    pass


class TooLarge(InvalidRequest):
    pass


class RateLimited(CorralError):
    #: seconds to wait before the next request (the server's Retry-After)
    retry_after: float = 1.0


class Timeout(CorralError):
    pass


class ServerError(CorralError):
    pass


_BY_STATUS: dict[int, type[CorralError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: InvalidRequest,
    408: Timeout, 409: Conflict, 413: TooLarge, 422: InvalidRequest, 429: RateLimited,
}


def from_response(response: httpx.Response) -> CorralError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or body.get("detail") or response.reason_phrase)
    problems = [(str(p.get("field", "")), str(p.get("message", "")))
                for p in body.get("problems") or [] if isinstance(p, dict)]
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else CorralError)
    error = cls(message, status=status, code=str(body.get("error", "")), problems=problems)
    if isinstance(error, RateLimited):
        with contextlib.suppress(ValueError):
            error.retry_after = float(response.headers.get("retry-after", "1"))
    return error
