"""corral.sdk: a typed Python client for corral's HTTP API (httpx + pydantic)."""

from corral.sdk import models
from corral.sdk.client import Client
from corral.sdk.errors import (
    Conflict,
    ConnectionFailed,
    CorralError,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    TooLarge,
    Unauthorized,
)

__all__ = [
    "Client",
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
    "models",
]
