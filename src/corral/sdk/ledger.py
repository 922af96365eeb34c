"""The ledger over HTTP: wire models of `/v1/ledger/...` and a client for them.

    from corral.sdk import Client
    from corral.sdk.ledger import Ledger
    with Client(url, token) as c:
        ledger = Ledger(c)
        ledger.grant("research", "500.00", expires_at="2026-12-31T00:00:00Z")   # admins
        print(ledger.balance("research").available)
        print(ledger.usage(by=["queue", "day"], csv=True))

Money is a decimal *string* on the wire ("412.50"), never a JSON float, so no amount is ever
rounded by a JSON parser; send amounts as strings too. Times are seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.sdk.client import Client

__all__ = [
    "Balance",
    "GrantIn",
    "GrantOut",
    "HistoryEntry",
    "HoldOut",
    "Ledger",
    "LedgerSummary",
    "PriceIn",
    "PriceOut",
    "TransferIn",
    "UsageReport",
    "UsageRow",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)


class Balance(_Model):
    """A queue's statement: balance = granted - settled - held - expired + in - out."""

    queue: str
    currency: str
    granted: str
    settled: str
    held: str
    expired: str
    transferred_in: str
    transferred_out: str
    balance: str
    available: str
    debt: str
    metered: bool = Field(description="false: no credits anywhere in its chain; admission "
                                      "does not check its work")


class GrantIn(_Model):
    model_config = ConfigDict(defer_build=False)  # a request body: built at once

    queue: str = Field(max_length=63)
    amount: str = Field(max_length=40, description="credits, e.g. '500.00'")
    expires_at: float | None = Field(None, strict=True, allow_inf_nan=False,
                                     description="seconds since the epoch; none: never")
    key: str | None = Field(None, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$",
                            description="idempotency key: the same key never grants twice")
    memo: str = Field("", max_length=500)


class GrantOut(_Model):
    key: str
    queue: str
    amount: str
    left: str
    at: float
    expires_at: float | None
    memo: str


class TransferIn(_Model):
    model_config = ConfigDict(defer_build=False)  # a request body: built at once

    source: str = Field(max_length=63)
    target: str = Field(max_length=63)
    amount: str = Field(max_length=40)
    key: str | None = Field(None, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    memo: str = Field("", max_length=500)


class HoldOut(_Model):
    ref: str
    workload_id: str
    attempt: int
    queue: str
    funders: list[str]
    amount: str
    placed_at: float
    open: bool
    charged: str | None


class HistoryEntry(_Model):
    key: str
    kind: str
    at: float
    queue: str
    amount: str
    workload: str
    counterparty: str
    memo: str
    change: str = Field(description="net change of this queue's credits (its lots)")


class PriceIn(_Model):
    model_config = ConfigDict(defer_build=False)  # a request body: built at once

    price_per_gpu_hour: str = Field(max_length=40)
    provider: str | None = Field(None, max_length=63)
    region: str | None = Field(None, max_length=63)
    gpu_model: str | None = Field(None, max_length=63)
    capacity_kind: str | None = Field(None, max_length=16)
    valid_from: float | None = None
    valid_until: float | None = None


class PriceOut(PriceIn):
    id: int
    source: str


class UsageRow(_Model):
    group: dict[str, str]
    gpu_seconds: str
    gpu_hours: str
    cost: str


class UsageReport(_Model):
    by: list[str]
    currency: str
    rows: list[UsageRow]
    total_gpu_seconds: str
    total_cost: str
    #: the rows summed over the dimensions asked for (`totals=`), each group's cost rounded once
    totals: list[UsageRow] = []


class LedgerSummary(_Model):
    """What the dashboard's Credits page shows, in one answer (`GET /v1/ledger/summary`): the
    balances, spend per queue and UTC day and per provider over the last `days` days, the open
    holds and the grants (newest first, at most `max_items` each; `*_total` counts them all)."""

    currency: str
    days: int
    since: float
    until: float
    balances: list[Balance]
    by_day: UsageReport
    by_provider: UsageReport
    holds: list[HoldOut]
    holds_total: int
    grants: list[GrantOut]
    grants_total: int


class Ledger:
    """Ledger calls on an existing `Client` (its connection and token)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def balance(self, queue: str) -> Balance:
        return self.client._get(Balance, f"/v1/ledger/queues/{queue}/balance")

    def balances(self) -> list[Balance]:
        return self.client._list(Balance, "/v1/ledger/balances")

    def grants(self, queue: str | None = None) -> list[GrantOut]:
        """The grants of `queue`, or (None) of every queue the caller may see, in one request."""
        where = "" if queue is None else f"queues/{queue}/"
        return self.client._list(GrantOut, f"/v1/ledger/{where}grants")

    def holds(self, queue: str | None = None, *, open_only: bool = False,
              limit: int = 1000) -> list[HoldOut]:
        """The newest `limit` (at most 10,000) holds of `queue`, or (None) of every queue the
        caller may see, in the order placed, in one request."""
        where = "" if queue is None else f"queues/{queue}/"
        return self.client._list(
            HoldOut, f"/v1/ledger/{where}holds?open_only={str(open_only).lower()}&limit={limit}")

    def summary(self, *, days: int = 14) -> LedgerSummary:
        """Balances, spend per queue and day and per provider over `days`, open holds and
        grants, in one request (the dashboard's Credits page)."""
        return self.client._get(LedgerSummary, "/v1/ledger/summary", days=days)

    def history(self, queue: str, *, limit: int = 100) -> list[HistoryEntry]:
        return self.client._list(HistoryEntry, f"/v1/ledger/queues/{queue}/history?limit={limit}")

    def grant(self, queue: str, amount: str, *, expires_at: float | None = None,
              key: str | None = None, memo: str = "") -> GrantOut:
        body = GrantIn(queue=queue, amount=str(amount), expires_at=expires_at, key=key, memo=memo)
        return self.client._post(GrantOut, "/v1/ledger/grants", body.model_dump())

    def transfer(self, source: str, target: str, amount: str, *, key: str | None = None,
                 memo: str = "") -> HistoryEntry:
        body = TransferIn(source=source, target=target, amount=str(amount), key=key, memo=memo)
        return self.client._post(HistoryEntry, "/v1/ledger/transfers", body.model_dump())

    def prices(self) -> list[PriceOut]:
        return self.client._list(PriceOut, "/v1/ledger/prices")

    def add_price(self, price_per_gpu_hour: str, **pattern: Any) -> PriceOut:
        body = PriceIn(price_per_gpu_hour=str(price_per_gpu_hour), **pattern)
        return self.client._post(PriceOut, "/v1/ledger/prices", body.model_dump())

    def delete_price(self, price_id: int) -> None:
        self.client._call("DELETE", f"/v1/ledger/prices/{price_id}")

    def usage(self, *, by: Sequence[str] = ("queue", "day"), queue: Sequence[str] = (),
              since: float | None = None, until: float | None = None,
              totals: Sequence[str] = ()) -> UsageReport:
        """`totals`: also the rows summed over these of `by` (each group's cost rounded once)."""
        params = _usage_params(by, queue, since, until)
        if totals:
            params["totals"] = list(totals)
        return self.client._get(UsageReport, "/v1/ledger/usage", **params)

    def usage_csv(self, *, by: Sequence[str] = ("queue", "day"), queue: Sequence[str] = (),
                  since: float | None = None, until: float | None = None) -> str:
        params = _usage_params(by, queue, since, until)
        return self.client._call("GET", "/v1/ledger/usage.csv", params=params).text


def _usage_params(by: Sequence[str], queue: Sequence[str], since: float | None,
                  until: float | None) -> dict[str, Any]:
    params: dict[str, Any] = {"by": list(by)}
    if queue:
        params["queue"] = list(queue)
    if since is not None:
        params["since"] = since
    if until is not None:
        params["until"] = until
    return params

