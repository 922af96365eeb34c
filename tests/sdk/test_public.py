"""The SDK's public surface, pinned: a name leaves or arrives on purpose."""

from __future__ import annotations

import corral.sdk as sdk

PUBLIC = {"Client", "ConfigError", "Conflict", "ConnectionFailed", "CorralError", "Forbidden",
          "InvalidRequest", "NotFound", "RateLimited", "Retries", "ServerError", "Timeout",
          "TooLarge", "Unauthorized", "models"}


def test_the_public_names() -> None:
    assert set(sdk.__all__) == PUBLIC
    assert all(hasattr(sdk, name) for name in PUBLIC)


def test_every_sdk_error_is_a_corral_error() -> None:
    errors = [getattr(sdk, n) for n in PUBLIC if n.endswith(("Error", "Failed")) or n in {
        "Conflict", "Forbidden", "InvalidRequest", "NotFound", "RateLimited", "Timeout",
        "TooLarge", "Unauthorized"}]
    assert all(issubclass(e, sdk.CorralError) for e in errors)
