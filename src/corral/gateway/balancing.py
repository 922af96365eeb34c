"""Which ready replica gets a request: power of two choices on outstanding requests.

Two ready replicas are drawn at random and the one holding fewer requests the gateway has sent
it and not yet seen end wins (ties: the first drawn). This is Envoy's least-request balancer
with its default `choice_count: 2` (after Mitzenmacher's "power of two choices"): nearly as good
as scanning every replica for the least loaded, without herding every request of a burst onto
the one replica that looked idlest. A slow replica keeps its requests longer, so it holds more
outstanding and loses most draws: traffic moves away from it without any latency measurement.

A suspect replica (it broke a response off mid-stream: `RouteTable.mark_suspect`) is drawn only
when no trusted one is left, as Envoy's outlier detection ejects a host after gateway failures
but, below its panic threshold, balances over every host rather than over none: a suspicion
must never take a whole service down (a replica that is really dead is then refused at connect,
and that try goes to another replica).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from corral.gateway.routes import Replica

__all__ = ["pick_replica"]


def pick_replica(ready: Sequence[Replica], rng: random.Random,
                 exclude: Collection[str] = (), now: float | None = None) -> Replica | None:
    """The replica to send to, or None when no candidate is left. `exclude` names replicas
    already tried for this request (a retry goes elsewhere). `now` (event-loop time): leave
    out replicas suspect at that time, unless all the candidates are.

    >>> a, b = Replica("a", "http://a", outstanding=3), Replica("b", "http://b", outstanding=1)
    >>> pick_replica([a, b], random.Random(0)).id
    'b'
    """
    candidates = [r for r in ready if r.id not in exclude]
    if now is not None and len(candidates) > 1:
        candidates = [r for r in candidates if not r.suspect(now)] or candidates
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    first, second = rng.sample(candidates, 2)
    return second if second.outstanding < first.outstanding else first
