"""/v1/ledger: credits, holds, history, prices and usage reports.

Who may do what: everyone reads the prices; users read the balance, grants, holds, history and
usage of the queues they belong to; admins read everything and grant, transfer and set prices.
Writes are idempotent when the caller passes a `key` (a retried grant with the same key and the
same body grants once). Bad input is a 422 naming the field and the fix, and stores nothing; a
transfer larger than the source's available credits is a 409 with the ledger's sentence.
"""

from __future__ import annotations

import heapq
import io
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from corral.api.context import ApiContext, Caller, context, require_admin
from corral.api.errors import ApiError, not_found
from corral.control.accounting import parse_ref
from corral.control.ledger_prices import build_catalog
from corral.ledger import (
    Deny,
    Journal,
    LedgerError,
    LedgerInputError,
    PriceRule,
    ReportRow,
    Transaction,
    grant,
    statement,
    transfer,
    write_csv,
)
from corral.ledger.accounts import AccountKind
from corral.ledger.entries import Hold
from corral.ledger.funding import funding_chain
from corral.ledger.reports import DIMENSIONS
from corral.sdk import ledger as LM
from corral.sdk import models as M
from corral.store import Store
from corral.store import audit as AU
from corral.store import ledger_rows as LR
from corral.store import pool as P
from corral.store.auth import Principal
from corral.store.journal_sql import LedgerDb, LedgerSession
from corral.store.ledger_grants import Grant, GrantIndex
from corral.store.usage_groups import grouped_usage

__all__ = ["router"]

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
Ctx = Annotated[ApiContext, Depends(context)]
_ERRORS: dict[int | str, dict[str, Any]] = {
           401: {"model": M.ErrorBody}, 403: {"model": M.ErrorBody},
           404: {"model": M.ErrorBody}, 409: {"model": M.ErrorBody},
           422: {"model": M.ErrorBody}}
_LEDGERS: weakref.WeakKeyDictionary[Store, LedgerDb] = weakref.WeakKeyDictionary()
#: each ledger's grants, read incrementally (issue 14: not the journal decoded per request)
_GRANTS: weakref.WeakKeyDictionary[LedgerDb, GrantIndex] = weakref.WeakKeyDictionary()


def _ledger(ctx: ApiContext) -> LedgerDb:
    db = _LEDGERS.get(ctx.store)
    if db is None:
        db = _LEDGERS[ctx.store] = LedgerDb(ctx.store)
    return db


@contextmanager
def _refusing_bad_input() -> Iterator[None]:
    try:
        yield
    except LedgerInputError as e:
        fix = e.fix
        if e.problem.startswith("unknown queue"):  # the ledger's fix lists every queue: not here
            fix = "`corral queues` lists the queues"
        raise ApiError(422, "invalid_request", f"{e.field}: {e.problem}; {fix}",
                       [(e.field, f"{e.problem}; {fix}")]) from None
    except LedgerError as e:  # an idempotency key reused for another request
        raise ApiError(409, "conflict", str(e), [("key", "use a new key for a new request")]
                       ) from None


def _now(ctx: ApiContext) -> Decimal:
    return Decimal(repr(float(ctx.clock.now())))


def _visible_queue(s: LedgerSession, who: Principal, queue: str) -> None:
    if queue not in s.journal.chart or not who.may_use(queue):
        raise not_found("queue", queue)


def _balance(journal: Journal, queue: str, now: Decimal) -> LM.Balance:
    st = statement(journal, queue, now)
    metered = any(journal.lots(q) for q in funding_chain(journal, queue))
    return LM.Balance(queue=queue, currency=journal.currency.code, metered=metered,
                      **{f: str(getattr(st, f)) for f in (
                          "granted", "settled", "held", "expired", "transferred_in",
                          "transferred_out", "balance", "available", "debt")})


@router.get("/balances", response_model=list[LM.Balance], responses=_ERRORS)
def balances(ctx: Ctx, who: Caller) -> list[LM.Balance]:
    """The statement of every queue the caller may see."""
    with _ledger(ctx).read() as s:
        return [_balance(s.journal, q, _now(ctx)) for q in s.journal.chart.queues
                if who.may_use(q)]


@router.get("/queues/{queue}/balance", response_model=LM.Balance, responses=_ERRORS)
def balance(queue: str, ctx: Ctx, who: Caller) -> LM.Balance:
    with _ledger(ctx).read() as s:
        _visible_queue(s, who, queue)
        return _balance(s.journal, queue, _now(ctx))


@router.get("/queues/{queue}/grants", response_model=list[LM.GrantOut], responses=_ERRORS)
def grants(queue: str, ctx: Ctx, who: Caller) -> list[LM.GrantOut]:
    with _ledger(ctx).read() as s:
        _visible_queue(s, who, queue)
        return _grant_views(ctx, s, lambda q: q == queue)


@router.get("/grants", response_model=list[LM.GrantOut], responses=_ERRORS)
def all_grants(ctx: Ctx, who: Caller) -> list[LM.GrantOut]:
    """The grants of every queue the caller may see, in the journal's order: one request for
    the Credits page, not one per queue (issue 14)."""
    with _ledger(ctx).read() as s:
        return _grant_views(ctx, s, who.may_use)


def _grant_views(ctx: ApiContext, s: LedgerSession, wanted: Callable[[str], bool]
                 ) -> list[LM.GrantOut]:
    """From the ledger's grant index (store/ledger_grants.py: the grants appended since the
    last request read, not the journal decoded), what is left of each from the journal."""
    db = _ledger(ctx)
    index = _GRANTS.get(db)
    if index is None:
        index = _GRANTS[db] = GrantIndex()
    assert s.store is not None, "LedgerDb sessions carry their SQL journal store"
    return [_grant_view(s.journal, g) for g in index.through(s.conn, s.store.last_seq)
            if wanted(g.queue)]


def _grant_view(journal: Journal, g: Grant) -> LM.GrantOut:
    left = journal.balance(g.lot) if g.lot is not None else Decimal(0)
    return LM.GrantOut(key=g.key, queue=g.queue, amount=str(g.amount),
                       left=str(left.quantize(journal.currency.quantum)), at=float(g.at),
                       expires_at=None if g.expires_at is None else float(g.expires_at),
                       memo=g.memo)


#: the most holds one list returns (its newest; `limit`): a settled hold is read back from the
#: stored transactions, so an unbounded list read the whole journal in the server's process
MAX_HOLDS = 10_000
_HoldLimit = Annotated[int, Query(ge=1, le=MAX_HOLDS, description=(
    "the newest this many holds, listed in the order placed"))]
_OpenOnly = Annotated[bool, Query(description="only holds not yet settled")]


@router.get("/queues/{queue}/holds", response_model=list[LM.HoldOut], responses=_ERRORS)
def holds(queue: str, ctx: Ctx, who: Caller, open_only: _OpenOnly = False,
          limit: _HoldLimit = 1000) -> list[LM.HoldOut]:
    """The newest `limit` holds of the queue, in the order placed (settled ones too unless
    open_only)."""
    with _ledger(ctx).read() as s:
        _visible_queue(s, who, queue)
        return _hold_views(s.journal.recent_holds(limit, {queue}, open_only=open_only))


@router.get("/holds", response_model=list[LM.HoldOut], responses=_ERRORS)
def all_holds(ctx: Ctx, who: Caller, open_only: _OpenOnly = False,
              limit: _HoldLimit = 1000) -> list[LM.HoldOut]:
    """The newest `limit` holds of every queue the caller may see, in the order placed: one
    request for every queue (issue 14)."""
    with _ledger(ctx).read() as s:
        queues = None if who.is_admin else set(who.queues)
        return _hold_views(s.journal.recent_holds(limit, queues, open_only=open_only))


def _hold_views(found: Iterable[Hold]) -> list[LM.HoldOut]:
    out = []
    for h in found:
        wid, attempt = parse_ref(h.workload)
        out.append(LM.HoldOut(
            ref=h.workload, workload_id=wid, attempt=attempt, queue=h.queue,
            funders=list(h.funders), amount=str(h.amount), placed_at=float(h.placed_at),
            open=h.open, charged=None if h.charged is None else str(h.charged)))
    return out


#: the most holds and grants a summary lists (newest first; it counts them all)
SUMMARY_ITEMS = 200
#: the most rows of a summary's report by day and queue (a 422 past it, naming days)
SUMMARY_ROWS = 10_000
_Days = Annotated[int, Query(ge=1, le=92, description="the window: the last N UTC days")]


@router.get("/summary", response_model=LM.LedgerSummary, responses=_ERRORS)
def summary(ctx: Ctx, who: Caller, days: _Days = 14) -> LM.LedgerSummary:
    """The Credits page in one request (issue 14): every balance the caller may see, spend per
    queue and UTC day and per provider over the last `days` days (grouped in SQL:
    `corral.store.usage_groups`), the open holds and the grants, newest first, at most
    SUMMARY_ITEMS each. Bounded in time (92 days at most) and in rows."""
    now = float(ctx.clock.now())
    since = float((int(now) // 86400 - days + 1) * 86400)
    with _ledger(ctx).read() as s:
        balances = [_balance(s.journal, q, _now(ctx)) for q in s.journal.chart.queues
                     if who.may_use(q)]
        visible = [h for h in s.journal.holds(open_only=True) if who.may_use(h.queue)]
        # views of the newest SUMMARY_ITEMS only (tens of thousands may be open at scale),
        # newest first, a later one first at the same instant
        newest = heapq.nlargest(SUMMARY_ITEMS, range(len(visible)),
                                key=lambda i: (visible[i].placed_at, i))
        holds = _hold_views(visible[i] for i in newest)
        grants = _grant_views(ctx, s, who.may_use)
    grants = grants[::-1]  # the journal's order: newest last
    try:
        by_day = usage(ctx, who, by=["day", "queue"], since=since, totals=["queue"],
                       limit=SUMMARY_ROWS)
    except ApiError as e:
        if not any(field == "limit" for field, _ in e.problems):
            raise
        raise ApiError(422, "invalid_request", f"days: {e.message}",
                       [("days", "ask for fewer days")]) from None
    by_provider = usage(ctx, who, by=["provider"], since=since, limit=SUMMARY_ROWS)
    return LM.LedgerSummary(
        currency=by_day.currency, days=days, since=since, until=now, balances=balances,
        by_day=by_day, by_provider=by_provider, holds=holds,
        holds_total=len(visible), grants=grants[:SUMMARY_ITEMS], grants_total=len(grants))


@router.get("/queues/{queue}/history", response_model=list[LM.HistoryEntry], responses=_ERRORS)
def history(queue: str, ctx: Ctx, who: Caller,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[LM.HistoryEntry]:
    """Transactions that touched the queue's accounts, newest first."""
    with _ledger(ctx).read() as s:
        _visible_queue(s, who, queue)
        found: list[LM.HistoryEntry] = []
        for tx in reversed(list(s.journal.transactions())):
            touched = [p for p in tx.postings if p.account.queue == queue]
            if not touched and tx.intent.queue != queue and tx.intent.counterparty != queue:
                continue
            change = sum((p.amount for p in touched if p.account.kind is AccountKind.CREDITS),
                         Decimal(0))
            found.append(_entry(tx, change))
            if len(found) >= limit:
                break
        return found


def _entry(tx: Transaction, change: Decimal) -> LM.HistoryEntry:
    i = tx.intent
    return LM.HistoryEntry(key=tx.key, kind=i.kind.value, at=float(tx.at), queue=i.queue,
                           amount=str(i.amount), workload=i.workload,
                           counterparty=i.counterparty, memo=tx.memo, change=str(change))


@router.post("/grants", status_code=201, response_model=LM.GrantOut, responses=_ERRORS)
def post_grant(body: LM.GrantIn, ctx: Ctx, who: Caller) -> LM.GrantOut:
    """Admins: grant credits to a queue, optionally expiring. Idempotent under `key`."""
    require_admin(who)
    with _refusing_bad_input(), _ledger(ctx).write() as s:
        tx = grant(s.journal, key=body.key or f"grant-{uuid.uuid4().hex[:16]}",
                   queue=body.queue, amount=body.amount, at=_now(ctx),
                   expires_at=None if body.expires_at is None else Decimal(repr(body.expires_at)),
                   memo=body.memo)
        AU.record(s.conn, at=ctx.clock.now(), actor=who.name, action="credits.grant",
                  target=tx.key, queue=body.queue, detail={"amount": str(body.amount)})
        return _grant_view(s.journal, Grant.of(tx))


@router.post("/transfers", status_code=201, response_model=LM.HistoryEntry, responses=_ERRORS)
def post_transfer(body: LM.TransferIn, ctx: Ctx, who: Caller) -> LM.HistoryEntry:
    """Admins: move available credits between queues (they keep their expiry)."""
    require_admin(who)
    with _refusing_bad_input(), _ledger(ctx).write() as s:
        result = transfer(s.journal, key=body.key or f"transfer-{uuid.uuid4().hex[:16]}",
                          source=body.source, target=body.target, amount=body.amount,
                          at=_now(ctx), memo=body.memo)
        if isinstance(result, Deny):
            raise ApiError(409, "insufficient_credits", result.message,
                           [("amount", f"at most {result.available} can move now")])
        moved = sum((p.amount for p in result.postings if p.account.queue == body.source),
                    Decimal(0))
        AU.record(s.conn, at=ctx.clock.now(), actor=who.name, action="credits.transfer",
                  target=result.key, queue=body.source,
                  detail={"to": body.target, "amount": str(body.amount)})
        return _entry(result, moved)


@router.get("/prices", response_model=list[LM.PriceOut], responses=_ERRORS)
def prices(ctx: Ctx, who: Caller) -> list[LM.PriceOut]:
    """Explicit price rules (pool file and admins). Nodes without a rule pay their own price."""
    with ctx.store.read() as conn:
        return [_price_view(p) for p in LR.list_prices(conn)]


def _price_view(p: LR.PriceRow) -> LM.PriceOut:
    r = p.rule
    return LM.PriceOut(
        id=p.id, source=p.source, price_per_gpu_hour=str(r.price_per_gpu_hour),
        provider=r.provider, region=r.region, gpu_model=r.gpu_model,
        capacity_kind=None if r.capacity_kind is None else r.capacity_kind.value,
        valid_from=None if r.valid_from is None else float(r.valid_from),
        valid_until=None if r.valid_until is None else float(r.valid_until))


@router.post("/prices", status_code=201, response_model=LM.PriceOut, responses=_ERRORS)
def post_price(body: LM.PriceIn, ctx: Ctx, who: Caller) -> LM.PriceOut:
    """Admins: add a price rule; refused (nothing stored) when it overlaps one for the same
    pattern in time."""
    require_admin(who)
    with _refusing_bad_input():
        rule = PriceRule.of(
            body.price_per_gpu_hour, provider=body.provider, region=body.region,
            gpu_model=body.gpu_model, capacity_kind=body.capacity_kind,
            valid_from=None if body.valid_from is None else Decimal(repr(body.valid_from)),
            valid_until=None if body.valid_until is None else Decimal(repr(body.valid_until)))
        if rule.price_per_gpu_hour < 0:
            raise LedgerInputError("price_per_gpu_hour", "is negative", "give a price >= 0")
        with ctx.store.write() as conn:
            existing = [p.rule for p in LR.list_prices(conn)]
            build_catalog([*existing, rule], P.list_nodes(conn))  # refuses overlaps
            new_id = LR.add_price(conn, rule, "api", ctx.clock.now())
            AU.record(conn, at=ctx.clock.now(), actor=who.name, action="price.add",
                      target=str(new_id))
    return _price_view(LR.PriceRow(new_id, rule, "api"))


@router.delete("/prices/{price_id}", status_code=204, responses=_ERRORS)
def delete_price(price_id: Annotated[int, Path(ge=1, le=2**63 - 1)], ctx: Ctx,
                 who: Caller) -> Response:
    require_admin(who)
    with ctx.store.write() as conn:
        if not LR.delete_price(conn, price_id):
            raise not_found("price", str(price_id))
        AU.record(conn, at=ctx.clock.now(), actor=who.name, action="price.delete",
                  target=str(price_id))
    return Response(status_code=204)


def _report(ctx: ApiContext, who: Principal, by: list[str], queue: list[str] | None,
            since: float | None, until: float | None, workload: str | None = None,
            limit: int = 0) -> tuple[list[str], list[ReportRow]]:
    """The report's rows, grouped in the database (`corral.store.usage_groups`: GROUP BY for
    the attempts that need no cut, the ledger's record-by-record path for the few that do), so
    the server's Python work grows with the groups and the cut attempts, while the database
    still scans the window's usage rows; more than `limit` is a 422 naming limit, refused at
    the (limit + 1)th group."""
    wanted = set(queue) if queue else None
    if not who.is_admin:
        wanted = (wanted or set(who.queues)) & set(who.queues)
    with _refusing_bad_input(), ctx.store.read() as conn:
        catalog = build_catalog([p.rule for p in LR.list_prices(conn)],
                                P.list_nodes(conn, include_inactive=True))
        return by, list(grouped_usage(conn, _now(ctx), by=by, catalog=catalog, queues=wanted,
                                      workload_id=workload, since=since, until=until,
                                      max_rows=limit or MAX_REPORT_ROWS))


_By = Annotated[list[str] | None, Query(description=f"group by any of {', '.join(DIMENSIONS)}")]
_Queues = Annotated[list[str] | None, Query(description="only these queues")]
_Since = Annotated[float | None, Query(
    ge=0, description="usage from (epoch seconds); attempts are cut at the window's edges")]
_Until = Annotated[float | None, Query(ge=0, description="usage before (epoch seconds)")]
_Workload = Annotated[str | None, Query(
    min_length=1, max_length=80,
    description="only this workload's usage (its own rows: a workload's cost line reads this, "
                "not its queue's whole report)")]


#: the most rows one report answers: a bound on the response, whatever the window asked for
MAX_REPORT_ROWS = 100_000
_Limit = Annotated[int, Query(
    ge=1, le=MAX_REPORT_ROWS,
    description="the most rows wanted; a report with more is refused (422 naming limit), "
                "never cut short silently: narrow it with since/until, queue or fewer `by`")]


_Totals = Annotated[list[str] | None, Query(
    description="also sum the rows over these of `by`'s dimensions (e.g. by=day&by=queue&"
                "totals=queue: each queue's cost over the days), exactly, rounded once")]


@router.get("/usage", response_model=LM.UsageReport, responses=_ERRORS)
def usage(ctx: Ctx, who: Caller, by: _By = None, queue: _Queues = None, since: _Since = None,
          until: _Until = None, totals: _Totals = None, workload: _Workload = None,
          limit: _Limit = MAX_REPORT_ROWS) -> LM.UsageReport:
    """Exact GPU-seconds and cost, grouped (default: by queue and UTC day)."""
    dims, rows = _report(ctx, who, by or ["queue", "day"], queue, since, until, workload, limit)
    currency = _ledger(ctx).currency
    total = sum((r.cost for r in rows if r.cost is not None), Fraction(0))
    return LM.UsageReport(
        by=dims, currency=currency.code, rows=[_usage_row(dims, r, currency) for r in rows],
        total_gpu_seconds=_exact(sum((r.gpu_seconds for r in rows), Decimal(0))),
        total_cost=currency.format(currency.charge(total)),
        totals=[_usage_row(totals or [], r, currency)
                for r in _summed(dims, rows, totals)] if totals else [])


def _usage_row(dims: list[str], r: ReportRow, currency: Any) -> LM.UsageRow:
    return LM.UsageRow(group=dict(zip(dims, r.group, strict=True)),
                       gpu_seconds=_exact(r.gpu_seconds), gpu_hours=str(r.gpu_hours),
                       cost=currency.format(currency.charge(r.cost or 0)))


def _summed(dims: list[str], rows: list[ReportRow], over: list[str]) -> list[ReportRow]:
    """The rows summed by the dimensions `over` (each one of `dims`), exactly: a group's cost
    is charged (rounded) once, as the report's total is, not as the sum of rounded rows."""
    unknown = [d for d in over if d not in dims]
    if unknown or len(set(over)) != len(over):
        problem = (f"{', '.join(unknown)} is not a dimension of this report's by"
                   if unknown else "a dimension is named twice")
        fix = f"name each at most once, among by ({', '.join(dims)})"
        raise ApiError(422, "invalid_request", f"totals: {problem}; {fix}",
                       [("totals", f"{problem}; {fix}")])
    at = [dims.index(d) for d in over]
    seconds: dict[tuple[str, ...], Decimal] = {}
    costs: dict[tuple[str, ...], Fraction] = {}
    for r in rows:
        group = tuple(r.group[i] for i in at)
        seconds[group] = seconds.get(group, Decimal(0)) + r.gpu_seconds
        costs[group] = costs.get(group, Fraction(0)) + (r.cost or Fraction(0))
    return [ReportRow(g, seconds[g], costs[g]) for g in sorted(seconds)]


def _exact(value: Decimal) -> str:
    """64800.000 -> '64800', 0.250 -> '0.25' (exact, never in exponent notation)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@router.get("/usage.csv", response_class=Response, responses=_ERRORS)
def usage_csv(ctx: Ctx, who: Caller, by: _By = None, queue: _Queues = None,
              since: _Since = None, until: _Until = None, workload: _Workload = None,
              limit: _Limit = MAX_REPORT_ROWS) -> Response:
    """The same report as CSV (GPU-seconds exact; hours and cost rounded per row)."""
    dims, rows = _report(ctx, who, by or ["queue", "day"], queue, since, until, workload, limit)
    out = io.StringIO()
    write_csv(rows, out, by=dims, currency=_ledger(ctx).currency)
    return Response(out.getvalue(), media_type="text/csv")

