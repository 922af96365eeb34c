"""The webhook sender: posts the outbox's deliveries, bounded, retried with backoff.

    every poll_s: drop what is over the per-URL cap -> read due rows -> claim those a slot is
    free for (one write txn) -> one task per POST -> record the outcome (one short txn each)

Why it cannot stall anything else:
- it runs on its own thread and event loop, never inside a control-loop step or a transaction
  (the step only INSERTs outbox rows);
- each POST has the hook's own timeout (default 10 s, at most 30 s), connect included;
- at most `concurrency` POSTs at once, and at most `per_origin` to one scheme://host:port, so a
  slow or dead endpoint holds at most `per_origin` slots and every other tenant's deliveries go
  on through the rest (a bulkhead); due rows are read oldest first but skipped, not waited
  for, when their origin is full;
- at most `cap_per_url` deliveries pending per URL: beyond that the oldest are dropped (state
  `dropped`, in the log), so a URL that is down for a week cannot fill the database.

Where it never posts: an address that `corral.control.webhooks.refused_address` refuses
(link-local, where clouds serve instance metadata; unspecified; multicast; and, unless the
server allows its network in `CORRAL_WEBHOOK_ALLOW_CIDRS` (`SenderSettings.allowed`), any
private or loopback address), checked on every address the URL's host resolves to just before
each POST, so that a name pointed there after submission is refused too (failed at once,
nothing sent). The client then resolves the name again itself, so a name that changes its
answer between the two lookups is not caught: pinning the connection to the checked address is
not done.

Retries: a connection error, a timeout, 408, 429 or a 5xx is tried again after
`base_backoff_s * 2^(attempts-1)` (5 s, 10 s, 20 s ... capped at `max_backoff_s`; a
Retry-After in seconds is honoured within that cap), up to `max_attempts` POSTs, then
`failed`. Any other 4xx fails at once: the receiver refused this body and would refuse it
again. Several senders (API replicas) may run: a claim is a guarded UPDATE with a deadline.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httpx

from corral.control.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Allowed,
    body_of,
    refused_address,
    sign,
)
from corral.store import Store
from corral.store import secrets as SEC
from corral.store import webhooks as WH
from corral.store.webhooks import Delivery

__all__ = ["SenderSettings", "WebhookSender"]

log = logging.getLogger(__name__)
_RETRIED_4XX: Final = frozenset({408, 425, 429})
USER_AGENT: Final = "corral-webhooks/1"


@dataclass(frozen=True)
class SenderSettings:
    concurrency: int = 16
    per_origin: int = 2
    max_attempts: int = 8
    base_backoff_s: float = 5.0
    max_backoff_s: float = 3600.0
    cap_per_url: int = 1000
    poll_s: float = 1.0
    #: private networks hooks may post to (`corral.control.webhooks.parse_allowed`)
    allowed: Allowed = ()


@dataclass(frozen=True)
class Outcome:
    state: str
    status: int | None
    error: str
    retry_after: float | None = None


def origin_of(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}"


def classify(status: int | None, error: str, retry_after: float | None = None) -> Outcome:
    """What one POST's answer means: delivered, failed for good, or tried again."""
    if status is not None and 200 <= status < 300:
        return Outcome(WH.DELIVERED, status, "")
    if status is not None and 400 <= status < 500 and status not in _RETRIED_4XX:
        return Outcome(WH.FAILED, status, error or f"HTTP {status}: the receiver refused it "
                       "(a 4xx other than 408/425/429 is not retried)")
    return Outcome(WH.PENDING, status, error or f"HTTP {status}", retry_after)


class WebhookSender:
    """Delivers `webhook_deliveries` rows. `tick()` starts what may start; `drain()` waits
    for the POSTs under way; `run(stop)` does both every `poll_s` on a thread of its own."""

    def __init__(self, store: Store, *, settings: SenderSettings | None = None,
                 clock: Callable[[], float] = time.time,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.settings = settings or SenderSettings()
        self.clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._origins: Counter[str] = Counter()

    # -- driving ------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; a failing round is logged, never fatal."""
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:  # a database hiccup: try again next round
                    log.exception("webhook sender round failed")
                # the pause ends early when stop is set: a server's stop need not wait it out
                await asyncio.to_thread(stop.wait, self.settings.poll_s)
        finally:
            await self.drain()
            await self.aclose()

    async def tick(self) -> int:
        """Drop over the cap, then claim and start the due deliveries a slot is free for;
        how many were started."""
        now = self.clock()
        free = self.settings.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        picked = await asyncio.to_thread(self._claim_due, now, free)
        for d in picked:
            self._origins[origin_of(d.url)] += 1
            task = asyncio.create_task(self._deliver(d))
            self._tasks[d.id] = task
            task.add_done_callback(functools.partial(self._done, d))
        return len(picked)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _done(self, d: Delivery, _task: object = None) -> None:
        self._tasks.pop(d.id, None)
        key = origin_of(d.url)
        self._origins[key] -= 1
        if self._origins[key] <= 0:
            del self._origins[key]

    # -- the store (on a worker thread) -----------------------------------------------------
    def _claim_due(self, now: float, free: int) -> list[Delivery]:
        s = self.settings
        with self.store.write() as conn:
            WH.drop_over_cap(conn, s.cap_per_url, now)
            room = Counter({o: s.per_origin - n for o, n in self._origins.items()})
            picked: list[Delivery] = []
            for d in WH.due(conn, now, limit=max(4 * s.concurrency, 64)):
                origin = origin_of(d.url)
                if d.id in self._tasks or room.get(origin, s.per_origin) <= 0:
                    continue  # its origin is full: skipped, not waited for
                if WH.claim(conn, d.id, now, until=now + d.timeout_s + 30.0):
                    room[origin] = room.get(origin, s.per_origin) - 1
                    picked.append(d)
                    if len(picked) >= free:
                        break
        return picked

    def _secret(self, d: Delivery) -> str | None:
        if d.secret is None:
            return None
        box = SEC.box_of(self.store)
        with self.store.read() as conn:
            return SEC.resolve(conn, box, d.queue, {"secret": d.secret})["secret"]

    def _record(self, d: Delivery, outcome: Outcome, now: float) -> None:
        attempts = d.attempts + 1
        state, next_at = outcome.state, now
        if state == WH.PENDING:
            if attempts >= self.settings.max_attempts:
                state = WH.FAILED
            else:
                next_at = now + self.backoff(attempts, outcome.retry_after)
        with self.store.write() as conn:
            WH.finish(conn, d.id, state=state, attempts=attempts, now=now, next_at=next_at,
                      status=outcome.status, error=outcome.error)

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        s = self.settings
        wait = s.base_backoff_s * 2 ** (attempts - 1)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return float(min(wait, s.max_backoff_s))

    # -- one POST ----------------------------------------------------------------------
    async def _deliver(self, d: Delivery) -> None:
        try:
            outcome = await self._post(d)
        except Exception as e:  # a bug or a broken store: recorded, the sender goes on
            log.exception("webhook delivery %s failed unexpectedly", d.id)
            outcome = Outcome(WH.PENDING, None, f"internal error: {type(e).__name__}")
        try:
            await asyncio.to_thread(self._record, d, outcome, self.clock())
        except Exception:  # the claim expires and another round tries again
            log.exception("could not record webhook delivery %s", d.id)

    async def _post(self, d: Delivery) -> Outcome:
        try:
            secret = await asyncio.to_thread(self._secret, d)
        except (SEC.SecretMissing, SEC.SecretsUnavailable) as e:
            return Outcome(WH.PENDING, None, f"notify secret {d.secret!r}: {e}")
        body = body_of(d.payload, d.id)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   DELIVERY_HEADER: str(d.id), EVENT_HEADER: d.event}
        if secret is not None:
            headers[SIGNATURE_HEADER] = sign(secret, body, int(self.clock()))
        refused = await _refused_destination(d.url, self.settings.allowed)
        if refused:
            return Outcome(WH.FAILED, None, refused)
        try:
            r = await self._http().post(d.url, content=body, headers=headers,
                                        timeout=httpx.Timeout(d.timeout_s))
        except httpx.TimeoutException:
            return Outcome(WH.PENDING, None, f"timed out after {d.timeout_s:g}s")
        except httpx.HTTPError as e:
            return Outcome(WH.PENDING, None, f"{type(e).__name__}: {e}"[:300])
        return classify(r.status_code, "", _retry_after(r))

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # no redirects: a 3xx is an answer (recorded, retried), never a second request to
            # a host the spec did not name; no proxies from the environment
            self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=False,
                                             trust_env=False)
        return self._client


async def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to ([] when it does not: the POST then fails as usual)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


async def _refused_destination(url: str, allowed: Allowed = ()) -> str:
    """Why this URL's host must not be posted to (module docstring), or ""."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    for raw in await _resolve(host, parts.port or (443 if parts.scheme == "https" else 80)):
        try:
            address = ipaddress.ip_address(raw.split("%", 1)[0])  # fe80::1%eth0
        except ValueError:
            continue
        reason = refused_address(address, allowed)
        if reason:
            return f"{host} resolves to {address}, {reason}: nothing was sent"
    return ""


def _retry_after(r: httpx.Response) -> float | None:
    value = r.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
