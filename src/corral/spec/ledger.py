"""The pool file's `ledger:` and `prices:` sections.

    ledger:
      enforce: true          # admission refuses work whose hold cannot be covered
      window: 1h             # the rolling hold of work without max_runtime (topped up as it runs)
      stop_when_exhausted: true   # stop running work whose top-up nobody can cover
    prices:                  # beat the node prices (price_per_gpu_hour / provider prices)
      - {provider: aws-use1, gpu_model: H100, price_per_gpu_hour: "4.10",
         valid_until: "2026-03-01T00:00:00Z"}
      - {provider: aws-use1, gpu_model: H100, price_per_gpu_hour: "3.60",
         valid_from: "2026-03-01T00:00:00Z"}

A price names any of provider, region, gpu_model and capacity_kind (left out or "*": any); the
most specific rule wins (see `corral.ledger.prices`). Write prices as strings ("4.10") to keep
them exact; plain YAML numbers are read through their shortest decimal form (4.1 -> 4.1).
Validity times are ISO 8601 (with a zone, else UTC) or seconds since the epoch.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.core.model import CapacityKind
from corral.spec.limits import MAX_PRICE
from corral.spec.quantities import DurationS

__all__ = ["LedgerSpec", "PriceSpec", "epoch_seconds"]


def epoch_seconds(value: dt.datetime) -> Decimal:
    """Exact seconds since the epoch; a naive time is read as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    whole = Decimal(delta.days * 86_400 + delta.seconds)
    return whole + Decimal(delta.microseconds).scaleb(-6) if delta.microseconds else whole


class LedgerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enforce: bool = Field(True, description="refuse work whose hold cannot be covered")
    window: DurationS = Field(3600.0, description="rolling hold for work without max_runtime")
    stop_when_exhausted: bool = Field(
        True, description="stop running work whose rolling top-up cannot be covered")

    @field_validator("window")
    @classmethod
    def _window(cls, v: float) -> float:
        if v < 60:
            raise ValueError("window must be at least 60s (a hold per minute at most), e.g. 1h")
        return v


class PriceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    price_per_gpu_hour: Decimal = Field(ge=0, le=Decimal(MAX_PRICE), allow_inf_nan=False)
    provider: str | None = None
    region: str | None = None
    gpu_model: str | None = None
    capacity_kind: CapacityKind | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    @field_validator("price_per_gpu_hour", mode="before")
    @classmethod
    def _exact(cls, v: object) -> object:
        return repr(v) if isinstance(v, float) else v  # 4.1 means 4.1, not 4.0999999...

    @model_validator(mode="after")
    def _period(self) -> PriceSpec:
        if (self.valid_from is not None and self.valid_until is not None
                and epoch_seconds(self.valid_until) <= epoch_seconds(self.valid_from)):
            raise ValueError("valid_until must be after valid_from")
        return self

    @property
    def valid_from_s(self) -> Decimal | None:
        return None if self.valid_from is None else epoch_seconds(self.valid_from)

    @property
    def valid_until_s(self) -> Decimal | None:
        return None if self.valid_until is None else epoch_seconds(self.valid_until)
