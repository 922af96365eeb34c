"""corral.sdk: a typed Python client for corral's HTTP API (httpx + pydantic)."""

from corral.sdk import models
from corral.sdk.client import Client
from corral.sdk.config import ConfigError
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
from corral.sdk.retry import Retries

__all__ = [
    "Client",
    "ConfigError",
    "Conflict",
    "ConnectionFailed",
    "CorralError",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "Retries",
    "ServerError",
    "Timeout",
    "TooLarge",
    "Unauthorized",
    "models",
]
