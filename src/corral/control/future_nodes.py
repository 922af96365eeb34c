"""The nodes that may join this pool later, as the submission check counts them.

House rule: nothing is accepted that can fail later, and nothing refused that a node could
still run. A submission is checked against the nodes present *and* those that may join later
(`corral.control.submission.Submissions`, whose `rentable` is `future_nodes`):

- **an instance of a renting provider** (aws, ssh; active in the store): the shapes its
  declaration gives (`pool_providers.rentable_nodes`), carrying the labels it would join with
  (the provider's `labels`, its instance type's `instance_labels` over them, an ssh host's own
  over both: `join_labels`) and running images only where the
  provider says `runs_images: true` (else it joins as `container-runtime: none`: the autoscaler
  rents nothing for image work there, `corral.autoscale.packing`);
- **an agent started by hand with a join token still good** (not revoked, not expired, a use
  left; the autoscaler's own tokens are for instances counted above): its hardware is not known
  until it joins, so corral does not guess a GPU it has never seen, but it may bring podman.
  While such a token exists, each class of agent already joined counts once more as one that
  runs images (`joinable`), and the agent backend honours `image` (`honoured`): image work that
  fits the pool's hardware waits for that agent instead of being refused.

So `image:` work is refused (422 naming `image`) exactly when no node present runs images, no
renting provider declares `runs_images: true`, and no hand-made join token is still good.
Token state is read at most every `TOKEN_TTL_S` per API process.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Final, Protocol

from sqlalchemy import Connection, or_, select

from corral.control.pool_providers import ACTIVE, declared_providers, rentable_nodes
from corral.core.model import LABEL_CONTAINER_RUNTIME, LABEL_RUNS_IMAGES, Node
from corral.store import Store
from corral.store import pool as P
from corral.store.agents import AgentJoinToken
from corral.store.schema import Provider as ProviderRow

__all__ = ["AUTOSCALER", "IMAGE_RUNNERS", "TOKEN_TTL_S", "ImageRunners", "future_key",
           "future_nodes", "joinable", "token_good"]

#: who the autoscaler's join tokens are created by (`pool_providers.autoscaler_from_pool`)
AUTOSCALER: Final = "autoscaler"
#: how long an API process keeps its answer to "may an agent still join with podman?"
TOKEN_TTL_S: Final = 5.0
#: what an agent joining later may run images with: a label value that is not `none`
_MAY_HAVE_PODMAN: Final = "podman"


def token_good(conn: Connection, now: float) -> bool:
    """Whether a join token made by hand (not the autoscaler's) may still be used: one indexed
    read of at most one row, however many tokens were ever made."""
    t = AgentJoinToken
    row = conn.execute(select(t.id).where(
        t.revoked.is_(False), t.uses_left > 0, t.created_by != AUTOSCALER,
        or_(t.expires_at.is_(None), t.expires_at > now)).limit(1)).first()
    return row is not None


def joinable(conn: Connection, now: float) -> list[Node]:
    """While a hand-made join token is good and no node present runs images: one node per
    class of those present (`submission.node_classes`), as if it ran images."""
    from corral.control.submission import node_classes  # submission wires future_nodes in

    if not token_good(conn, now):
        return []
    present = P.list_nodes(conn)
    if any(n.label(LABEL_RUNS_IMAGES) == "true" for n in present):
        return []  # image work already has a node; nothing to add
    return [dataclasses.replace(n, id=f"joinable/{n.id}", labels=tuple(sorted(
        {**dict(n.labels), LABEL_CONTAINER_RUNTIME: _MAY_HAVE_PODMAN}.items())))
        for n in node_classes(present)]


def future_key(conn: Connection) -> tuple[object, ...]:
    """What `future_nodes` depends on besides the nodes present: the renting providers'
    declarations and whether a hand-made join token is good (an indexed read of one row; the
    providers' table is a row per provider). `Submissions` reads the pool again when it moves."""
    providers = tuple(tuple(r) for r in conn.execute(
        select(ProviderRow.name, ProviderRow.spec).order_by(ProviderRow.name)))
    return token_good(conn, time.time()), providers


def future_nodes(conn: Connection) -> list[Node]:
    """The nodes that may join later: renting providers' shapes, then `joinable`."""
    return rentable_nodes(conn) + joinable(conn, time.time())


def _declares_images(conn: Connection) -> bool:
    return any(d.lifecycle == ACTIVE and d.spec.kind in ("aws", "ssh")
               and (d.spec.aws if d.spec.kind == "aws" else d.spec.ssh).runs_images is True
               for d in declared_providers(conn))


class Api(Protocol):
    """What `ImageRunners.honoured` reads of the API's context (`corral.api.ApiContext`)."""

    @property
    def backend_name(self) -> str | None: ...

    @property
    def store(self) -> Store: ...


class ImageRunners:
    """Whether image work may find a node later, for the agent backend's packaging check
    (`corral.control.packaging`): the backend says `image` once a joined host has podman; a
    provider declaring `runs_images: true` or a good hand-made join token may bring one."""

    def __init__(self, ttl_s: float = TOKEN_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        #: per store (tests run several in one process): when read, the answer
        self._known: dict[int, tuple[float, bool]] = {}

    def honoured(self, api: Api, said: frozenset[str] | None) -> frozenset[str] | None:
        """`said` (the backend's packaging fields), with `image` added on the agent backend
        when a node that runs images may join later. The store is read only then."""
        if api.backend_name != "agent" or said is None or "image" in said:
            return said
        return said | {"image"} if self._may_come(api.store) else said

    def _may_come(self, store: Store) -> bool:
        at = time.monotonic()
        with self._lock:
            known = self._known.get(id(store))
            if known is not None and 0 <= at - known[0] < self.ttl_s:
                return known[1]
        with store.read() as conn:
            answer = _declares_images(conn) or token_good(conn, time.time())
        with self._lock:
            if len(self._known) > 64:  # stores come and go in tests: keep it bounded
                self._known.clear()
            self._known[id(store)] = (at, answer)
        return answer


#: one per API process (the answer is the store's, whichever app asks)
IMAGE_RUNNERS: Final = ImageRunners()

