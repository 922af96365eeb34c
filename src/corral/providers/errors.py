"""Errors raised by providers.

Expected outcomes are not errors: an instance that was interrupted or failed to boot is reported by
``Provider.instances()`` as an `Instance` in state ``failed`` or ``terminated`` with a reason.
An exception means the request could not be served::

    ProviderError(reason_code, message, retry_after_s=None)
        reason_code is one of:
        NoCapacity       the provider has no capacity of this offer now (try another offer/zone)
        QuotaExceeded    the account's limit for this instance family/region is reached
        Timeout          the provider did not answer in time (the launch may or may not exist:
                         the caller reconciles by tag before trying again)
        AuthFailed       the credentials were refused (no retry helps; fix the provider's settings)
        InvalidRequest   the request was wrong (an unknown instance type, a bad setting)

The autoscaler reads ``reason_code`` to decide what to try next and ``retry_after_s`` (when the
provider said) as the least backoff before it tries this offer again.
"""

from __future__ import annotations

import enum

__all__ = ["ProviderError", "ProviderReason"]


class ProviderReason(enum.StrEnum):
    NO_CAPACITY = "NoCapacity"
    QUOTA_EXCEEDED = "QuotaExceeded"
    TIMEOUT = "Timeout"
    AUTH_FAILED = "AuthFailed"
    INVALID_REQUEST = "InvalidRequest"


class ProviderError(Exception):
    """A provider refused or could not serve a request; `reason_code` says which kind of refusal."""

    def __init__(self, reason_code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = ProviderReason(reason_code)
        self.message = message
        self.retry_after_s = retry_after_s
