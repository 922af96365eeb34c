"""The wire shapes of /v1/secrets: a value goes in, only names and times come out.

Shared by the API (`corral.api.secrets`) and the client (`corral.sdk.Client.set_secret`,
`secrets`, `delete_secret`); pydantic only, so a client install needs nothing more.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MAX_SECRET_BYTES", "SecretIn", "SecretInfo"]

#: one value (it goes into a process environment; Linux caps one variable at 128 KiB)
MAX_SECRET_BYTES = 64 * 1024


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a request body: built at once

    value: str = Field(max_length=MAX_SECRET_BYTES,
                       description="the value; stored sealed with the server's key and never "
                       "returned by any API")
    queue: str | None = Field(None, min_length=1, max_length=63,
                              description="the queue whose workloads may use it (its admins "
                              "may set it); none: every queue (admins only)")

    @field_validator("value")
    @classmethod
    def _value(cls, v: str) -> str:
        if "\0" in v:
            raise ValueError("a secret's value goes into an environment variable, which cannot "
                             "hold a NUL byte; remove it (or base64-encode binary values)")
        if len(v.encode()) > MAX_SECRET_BYTES:
            raise ValueError(f"at most {MAX_SECRET_BYTES // 1024} KiB; keep larger material in "
                             "a file on a volume and put its path in env")
        return v


class SecretInfo(BaseModel):
    """A secret as listed: its name, scope and history, never its value."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    name: str
    queue: str | None = Field(None, description="none: a global secret")
    created_by: str
    created_at: float
    updated_at: float
    created: bool | None = Field(None, description="on set: whether it was new")
