"""The load counted by every server's gateway, summed for the leader's autoscaler (issue 12).

Clients may reach any server, the leader's gateway and the standbys' alike. Each standby writes
what its gateway counted per autoscaled service to the store every `WRITE_EVERY_S` (one row per
gateway and service: gauges now, counters cumulative, `corral.store.gateway_loads`); the leader
reads the rows of its services each tick, adds their gauges while the row is fresh, and the
counters' growth since the last row it read (a write it missed loses nothing; a gateway that
restarted starts again from its new baseline). Knative's autoscaler gathers each activator's and
each pod's metrics the same way, by scraping them all; here the store is the channel, since a
standby's address is not known to the leader.

Fresh: the row's `seq` changed within `STALE_S` by the leader's own clock (so clock skew
between servers does not matter), and, the first time the leader sees it, it was written within
`STALE_S` (a dead gateway's last row counts for nothing after a restart). The leader ignores
its own row (a former standby's, left from before it led): its own gateway is read directly.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Final

from corral.control.service_autoscale import Load
from corral.store import Store
from corral.store.gateway_loads import LoadTotals, prune_loads, read_loads, write_loads

__all__ = ["STALE_S", "WRITE_EVERY_S", "SharedLoads", "add_loads", "new_latencies"]

#: how often a standby writes its gateway's counters
WRITE_EVERY_S: Final = 2.0
#: a row not rewritten for this long (leader's clock) counts for nothing
STALE_S: Final = 10.0
#: rows not written for this long are deleted (gateways gone for good)
PRUNE_AFTER_S: Final = 3600.0

#: a histogram as (upper bound, cumulative count) pairs; None is +Inf (JSON has no infinity)
Buckets = Sequence[tuple[float | None, float]]


def new_latencies(was: Buckets, now: Buckets) -> list[float]:
    """The requests a cumulative histogram gained between two reads, each at its bucket's upper
    bound (as precise as the histogram, never below the truth; +Inf at the largest finite
    bound). `was` empty: the series started at 0. Mismatched bounds: nothing.

    >>> new_latencies([(0.1, 1), (1.0, 1), (None, 1)], [(0.1, 2), (1.0, 4), (None, 5)])
    [0.1, 1.0, 1.0, 1.0]
    """
    if not was:
        was = [(b, 0.0) for b, _ in now]
    if not now or [b for b, _ in was] != [b for b, _ in now]:
        return []
    finite = [b for b, _ in now if b is not None]
    out: list[float] = []
    below_now = below_was = 0.0
    for (bound, count), (_, old) in zip(now, was, strict=True):
        new = (count - below_now) - (old - below_was)  # this bucket's own new requests
        below_now, below_was = count, old
        at = bound if bound is not None else (finite[-1] if finite else 0.0)
        out += [at] * int(max(new, 0))
    return out


def add_loads(a: Mapping[str, Load], b: Mapping[str, Load]) -> dict[str, Load]:
    """Per service, the sum of two gateways' loads."""
    out = dict(a)
    for sid, x in b.items():
        y = out.get(sid, Load())
        out[sid] = Load(y.in_flight + x.in_flight, y.running + x.running,
                        y.arrivals + x.arrivals, y.latencies + x.latencies)
    return out


def write_own(store: Store, gateway: str, totals: Mapping[str, LoadTotals], now: float) -> None:
    """A standby's write: its gateway's counters per autoscaled service."""
    with store.write() as conn:
        write_loads(conn, gateway, totals, now)


class SharedLoads:
    """The leader's reader of the other gateways' rows; keeps the last row read of each."""

    def __init__(self, own: str) -> None:
        self.own = own
        #: (gateway, service) -> (the last row read, when its seq last changed: leader clock)
        self._last: dict[tuple[str, str], tuple[LoadTotals, float]] = {}
        self._pruned_at = 0.0

    def read(self, store: Store, services: Collection[str], now: float) -> dict[str, Load]:
        """Per service, what the other gateways counted: gauges now, counters since the
        last read. One query."""
        with store.read() as conn:
            rows = read_loads(conn, services)
        if now - self._pruned_at >= PRUNE_AFTER_S / 10:
            self._pruned_at = now
            with store.write() as conn:
                prune_loads(conn, now - PRUNE_AFTER_S)
        out: dict[str, Load] = {}
        for key, row in rows.items():
            gateway, sid = key
            if gateway == self.own:
                continue
            load = self._observe(key, row, now)
            if load is not None:
                out = add_loads(out, {sid: load})
        for gone in set(self._last) - set(rows):
            del self._last[gone]
        return out

    def _observe(self, key: tuple[str, str], row: LoadTotals, now: float) -> Load | None:
        last = self._last.get(key)
        if last is None:  # first sight: the baseline, counted only if written lately
            self._last[key] = (row, now if now - row.written_at < STALE_S else -STALE_S)
            fresh = now - row.written_at < STALE_S
            return Load(row.in_flight, min(row.running, row.in_flight)) if fresh else None
        was, seen = last
        if row.seq != was.seq:
            seen = now
        self._last[key] = (row, seen)
        if now - seen >= STALE_S:
            return None
        arrivals = max(0.0, row.arrivals - was.arrivals)
        latencies = new_latencies(was.buckets, row.buckets)
        return Load(row.in_flight, min(row.running, row.in_flight), int(arrivals),
                    tuple(latencies))

