"""corral.sdk: a typed Python client for corral's HTTP API (httpx + pydantic).

The names below are imported when first used (PEP 562 module `__getattr__`), so that a program
that wants only the wire types (`from corral.sdk import models`) or the errors does not import
httpx and the client, and the CLI's `--help` imports neither httpx nor pydantic.
`from corral.sdk import Client` works as before; type checkers read the imports under
TYPE_CHECKING.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# public name -> the module that defines it (a name equal to its module is the module itself)
_HOME = {
    "Client": "corral.sdk.client",
    "ConfigError": "corral.sdk.config",
    "Retries": "corral.sdk.retry",
    "models": "corral.sdk.models",
    **{name: "corral.sdk.errors" for name in (
        "Conflict", "ConnectionFailed", "CorralError", "Forbidden", "InvalidRequest", "NotFound",
        "RateLimited", "ServerError", "Timeout", "TooLarge", "Unauthorized")},
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(home)
    value = module if home.rsplit(".", 1)[1] == name else getattr(module, name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
