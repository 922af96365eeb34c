"""Renting providers: declared in the pool file or added at run time, kept in the store, built
into `corral.providers` objects, and the `PoolAutoscaler` that rents from them.

    providers:
      - name: aws-use1
        kind: aws                      # static (default) | ssh | aws
        settings: {region: us-east-1, image_id: ami-0abc..., instance_types: [p5.48xlarge, g6.xlarge]}
        min_nodes: 0
        max_nodes: 8
        max_spend_per_hour: 400
        idle_timeout: 5m               # idle since its join or its last work: returned
        idle_timeouts: {p5.48xlarge: 2m}   # per instance type (wins)

Where they live: the store's `providers` table, one row per provider, its `spec` the
`ProviderSpec` (a pool file's providers are written there at `corral up`; `POST /v1/providers`
writes one at run time). Two keys of corral's own ride along in `spec`: ``origin`` (``file`` or
``api``) and ``lifecycle`` (``active``, ``retiring`` while `corral providers rm` drains it,
``removed`` once every instance it rented is returned; the row stays, because past nodes and
their placements name it), and ``retire_by`` (server clock) when the rm has a timeout: work
still running on its nodes then is stopped (`--force` is a timeout of 0). The autoscaler
re-reads the table at every pass, so an add or a rm takes effect without a restart, and a
restart keeps what was added.

**A removal outlives the pool file.** `corral up` writes the pool file's providers into the
store merged over what is there (`corral.store.pool.sync_nodes`): the settings are the file's,
but corral's own keys (`lifecycle`, `retire_by`) are not in a file, so a provider removed at
run time stays removed (and one being removed keeps draining) across a restart with a pool file
that still declares it: a tombstone the file does not override, because an operator who removed
a provider while the file was unchanged meant it. `corral providers add FILE` brings it back
(a removed name may be added again). The reverse (the file wins at start-up) would re-rent from
a provider someone just removed, at the next unrelated restart.

**Price caps on spot-only shapes.** A spot shape's price is only known from the provider's API;
`rentable_nodes` prices it at the cheapest spot price the autoscaler last saw for that instance
type (`SPOT_SEEN`, refreshed at each pass; the submission check's pool is reloaded when it
changes), else at 0 (nothing seen yet: accepted, it waits with the reason). So work that may
only use spot and caps its price under every spot offer seen is refused at submission
(`PriceCapTooLow`, naming the cap and the cheapest price).

Credentials are never in a spec: aws reads boto3's chain (the server's environment, its
instance role) or a named `profile`; ssh names the key by its path on the server
(`corral.spec.pool.SshProviderSettings`). So nothing secret is stored or returned.

A static provider rents nothing and is not handed to the autoscaler: its nodes are the pool
file's and are never returned. A join token is made per launch, good for as many joins as
instances launched, and expires after the autoscaler's join timeout.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, insert, select, update

from corral.autoscale.pool import AutoscalerConfig, Budget, ProviderLimits
from corral.autoscale.spot import SpotRisk
from corral.control.autoscale import PoolAutoscaler
from corral.core.model import CapacityKind, Node
from corral.providers.base import Offer, Provider, join_labels
from corral.spec.pool import AutoscalerSpec, PoolSpec, ProviderSpec
from corral.store import Store, audit
from corral.store.schema import NodeRow
from corral.store.schema import Provider as ProviderRow

__all__ = [
    "ACTIVE",
    "REMOVED",
    "RENTING",
    "RETIRING",
    "SPOT_SEEN",
    "Declared",
    "ProviderConflict",
    "add_provider",
    "autoscaler_from_pool",
    "build_provider",
    "declared_providers",
    "provider_limits",
    "rentable_nodes",
    "renting_providers",
    "retire_provider",
    "spot_prices_hook",
]

log = logging.getLogger(__name__)

RENTING: Final = frozenset({"aws", "ssh"})
ACTIVE: Final = "active"
RETIRING: Final = "retiring"
REMOVED: Final = "removed"
_OWN_KEYS: Final = ("origin", "lifecycle", "retire_by")


class ProviderConflict(Exception):
    """The name is taken (by an active or retiring provider, or by pool-file nodes)."""


@dataclass(frozen=True)
class Declared:
    spec: ProviderSpec
    origin: str  # file | api
    lifecycle: str  # active | retiring | removed
    retire_by: float | None = None  # retiring: work still running then is stopped


# -- the store's providers -------------------------------------------------------------------
def declared_providers(conn: Connection, *, include_removed: bool = False) -> list[Declared]:
    """The renting providers in the store, by name."""
    out = []
    for (raw,) in conn.execute(select(ProviderRow.spec)
                                  .order_by(ProviderRow.name)):
        d = _declared(raw or {})
        if d is None:
            continue
        if d.lifecycle != REMOVED or include_removed:
            out.append(d)
    return out


def _declared(raw: Mapping[str, Any]) -> Declared | None:
    if raw.get("kind") not in RENTING:
        return None
    body = {k: v for k, v in raw.items() if k not in _OWN_KEYS}
    try:
        spec = ProviderSpec.model_validate(body)
    except ValueError as e:  # written by an older corral: skipped, said once per read
        log.warning("provider %r in the store is not valid now: %s", raw.get("name"), e)
        return None
    by = raw.get("retire_by")
    return Declared(spec, str(raw.get("origin", "file")), str(raw.get("lifecycle", ACTIVE)),
                    float(by) if isinstance(by, int | float) else None)


def _row_spec(spec: ProviderSpec, origin: str, lifecycle: str,
              retire_by: float | None = None) -> dict[str, Any]:
    row = {**spec.model_dump(mode="json", exclude={"node_groups"}), "origin": origin,
           "lifecycle": lifecycle}
    return row if retire_by is None else {**row, "retire_by": retire_by}


def add_provider(conn: Connection, spec: ProviderSpec, *, by: str, now: float) -> Declared:
    """Add a renting provider (kind aws or ssh) at run time. A removed one's name may be
    reused; a live one's, or a static provider's, may not (ProviderConflict)."""
    if spec.kind not in RENTING:
        raise ValueError(f"kind {spec.kind!r}: only providers that rent ({', '.join(sorted(RENTING))})"
                         " are added at run time; a static provider's nodes are the pool file's")
    row = conn.execute(select(ProviderRow.spec).where(ProviderRow.name == spec.name)).first()
    values = {"capacity_kind": str(spec.capacity_kind), "region": spec.region,
              "spec": _row_spec(spec, "api", ACTIVE)}
    if row is None:
        conn.execute(insert(ProviderRow).values(name=spec.name, **values))
    else:
        old = _declared(row.spec or {})
        if old is None or old.lifecycle != REMOVED:
            what = "is being removed" if old and old.lifecycle == RETIRING else "exists"
            raise ProviderConflict(f"provider {spec.name!r} {what}; choose another name"
                                   + (" or wait until its removal ends" if old else ""))
        conn.execute(update(ProviderRow).where(ProviderRow.name == spec.name).values(**values))
    audit.record(conn, at=now, actor=by, action="provider.add", target=spec.name,
                 detail={"kind": spec.kind, "max_nodes": spec.max_nodes,
                         "max_spend_per_hour": spec.max_spend_per_hour})
    return Declared(spec, "api", ACTIVE)


def retire_provider(conn: Connection, name: str, *, by: str, now: float,
                    timeout_s: float | None = None) -> Declared | None:
    """Start removing a renting provider: the autoscaler drains it and returns its capacity,
    then marks it removed. With `timeout_s` (0: `--force`), work still running on its nodes
    that long from now is stopped (requeued elsewhere, no restart spent) so that every instance
    is returned. None: no such renting provider. Idempotent while it drains; a second rm may
    only bring the deadline closer."""
    row = conn.execute(select(ProviderRow.spec).where(ProviderRow.name == name)).first()
    d = _declared(row.spec or {}) if row is not None else None
    if d is None or d.lifecycle == REMOVED:
        return None
    deadline = None if timeout_s is None else now + timeout_s
    if d.retire_by is not None and (deadline is None or d.retire_by < deadline):
        deadline = d.retire_by
    if d.lifecycle == ACTIVE or deadline != d.retire_by:
        _set_lifecycle(conn, name, d, RETIRING, deadline)
        audit.record(conn, at=now, actor=by, action="provider.remove", target=name,
                     detail={"kind": d.spec.kind, "timeout_s": timeout_s,
                             "retire_by": deadline})
    return Declared(d.spec, d.origin, RETIRING, deadline)


def mark_removed(store: Store, name: str, now: float) -> None:
    """Every instance of a retiring provider is returned: it is gone for good."""
    with store.write() as conn:
        row = conn.execute(select(ProviderRow.spec).where(ProviderRow.name == name)).first()
        d = _declared(row.spec or {}) if row is not None else None
        if d is None or d.lifecycle != RETIRING:
            return
        _set_lifecycle(conn, name, d, REMOVED)
        conn.execute(update(NodeRow).where(NodeRow.provider == name).values(active=False))
        audit.record(conn, at=now, actor="autoscaler", action="provider.removed", target=name,
                     detail={"reason": "every instance it rented is returned"})


def _set_lifecycle(conn: Connection, name: str, d: Declared, lifecycle: str,
                   retire_by: float | None = None) -> None:
    conn.execute(update(ProviderRow).where(ProviderRow.name == name)
                 .values(spec=_row_spec(d.spec, d.origin, lifecycle, retire_by)))


# -- what could be rented: for the submission check ------------------------------------------
#: hypothetical nodes per shape: enough for a gang to be judged possible, few enough to be cheap
RENTABLE_COPIES: Final = 8


class SpotSeen:
    """The cheapest spot price per GPU-hour the autoscaler last saw, per (provider, instance
    type), across zones. In memory: a restart forgets it until the first pass (then spot
    shapes are priced 0 again: accepted, they wait with the reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._prices: dict[tuple[str, str], float] = {}

    def update(self, offers: Sequence[Offer]) -> bool:
        """Remember these offers' spot prices; True when what is known changed."""
        seen: dict[tuple[str, str], float] = {}
        for o in offers:
            if o.capacity_kind == CapacityKind.SPOT and o.gpus:
                key = (o.provider, o.instance_type)
                seen[key] = min(seen.get(key, math.inf), float(o.price_per_gpu_hour))
        with self._lock:
            changed = seen != self._prices
            self._prices = seen
        return changed

    def price(self, provider: str, instance_type: str) -> float:
        with self._lock:
            return self._prices.get((provider, instance_type), 0.0)


#: the one the server's autoscaler feeds and the submission check reads
SPOT_SEEN = SpotSeen()


def spot_prices_hook(changed: Callable[[], None]) -> Callable[[Sequence[Offer]], None]:
    """The autoscaler's `offers_seen`: keep the spot prices; `changed()` when they changed
    (the server reloads the submission check's pool)."""
    def seen(offers: Sequence[Offer]) -> None:
        if SPOT_SEEN.update(offers):
            changed()
    return seen


def rentable_nodes(conn: Connection) -> list[Node]:
    """The nodes the active renting providers could give, from their declarations alone (no
    provider API is called): an aws provider's instance types with the shipped catalog's
    hardware (types it does not list are left out), an ssh provider's hosts. A submission that
    fits none of the pool's nodes but one of these is accepted: it waits, and the autoscaler
    rents for it. Spot prices are not known without the API: a spot shape is priced at the
    cheapest spot price the autoscaler last saw for it (`SPOT_SEEN`), else 0, so a price cap
    refuses spot-only work only under every spot offer seen."""
    out: list[Node] = []
    for d in declared_providers(conn):
        if d.lifecycle == ACTIVE:
            out += _aws_shapes(d.spec) if d.spec.kind == "aws" else _ssh_shapes(d.spec)
    return out


def _aws_shapes(p: ProviderSpec) -> list[Node]:
    from corral.providers.catalog import lookup

    s = p.aws
    copies = min(p.max_nodes if p.max_nodes is not None else RENTABLE_COPIES, RENTABLE_COPIES)
    zone = s.zones[0] if s.zones else p.zone
    out = []
    for itype in s.instance_types:
        e = lookup("aws", itype)
        if e is None or not e.gpus:
            continue
        listed = s.on_demand_prices.get(itype, float(e.on_demand_per_hour))
        labels = join_labels(p.labels_of(itype), s.runs_images)
        for kind in s.capacity_kinds:
            price = listed / e.gpus if kind == "on-demand" else SPOT_SEEN.price(p.name, itype)
            out += [Node(f"rentable/{p.name}/{itype}/{kind}/{i}", p.name, e.gpu_model, e.gpus,
                         e.gpu_memory_mib, e.vcpus * 1000, e.memory_mib,
                         price_per_gpu_hour=price, capacity_kind=CapacityKind(kind),
                         region=s.region, zone=zone,
                         labels=labels) for i in range(copies)]
    return out


def _ssh_shapes(p: ProviderSpec) -> list[Node]:
    s = p.ssh
    return [Node(f"rentable/{p.name}/{h.name}", p.name, h.gpu_model, h.gpus, h.gpu_memory,
                 h.cpu, h.memory, price_per_gpu_hour=h.price_per_gpu_hour,
                 capacity_kind=CapacityKind.OWNED, region=p.region, zone=h.zone,
                 labels=join_labels(p.host_labels(h), s.runs_images))
            for h in s.hosts if h.gpus]


# -- building ---------------------------------------------------------------------------------
JoinToken = Callable[[int], str]


def build_provider(p: ProviderSpec, cluster_id: str, server_url: str = "",
                   join_token: JoinToken | None = None) -> Provider:
    """The provider object of a renting spec. ssh needs the server's URL and join tokens."""
    if p.kind == "aws":
        return _aws(p, cluster_id)
    if p.kind == "ssh":
        return _ssh(p, server_url, join_token or _no_tokens)
    raise ValueError(f"provider {p.name!r} of kind {p.kind!r} rents nothing")


def _no_tokens(uses: int) -> str:
    raise RuntimeError("no join tokens here: build the ssh provider with join_token")


def renting_providers(spec: PoolSpec | None, cluster_id: str, server_url: str = "",
                      join_token: JoinToken | None = None) -> dict[str, Provider]:
    return {p.name: build_provider(p, cluster_id, server_url, join_token)
            for p in (spec.providers if spec is not None else ()) if p.kind in RENTING}


def _aws(p: ProviderSpec, cluster_id: str) -> Provider:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    from corral.providers.aws import AwsProvider, AwsSettings

    s = p.aws
    client = None
    if s.profile:  # credentials by name: a profile of the server's AWS config
        client = boto3.session.Session(profile_name=s.profile, region_name=s.region).client(
            "ec2", endpoint_url=s.endpoint_url,
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}))
    return AwsProvider(p.name, cluster_id, AwsSettings(
        s.region, s.image_id, tuple(s.instance_types), tuple(s.zones),
        tuple(CapacityKind(k) for k in s.capacity_kinds), s.subnet_id,
        tuple(s.security_group_ids), s.iam_instance_profile,
        {k: Decimal(repr(v)) for k, v in s.on_demand_prices.items()}, s.endpoint_url,
        s.runs_images, dict(p.labels), p.instance_labels),
        client=client)


def _ssh(p: ProviderSpec, server_url: str, join_token: JoinToken) -> Provider:
    from corral.providers.ssh import SshHost, SshProvider, source_wheel

    s = p.ssh
    hosts = [SshHost(h.name, h.address, h.port, h.user, h.gpus, h.gpu_model, h.gpu_memory,
                     h.cpu, h.memory, Decimal(repr(h.price_per_gpu_hour)), p.region, h.zone,
                     h.rack, h.python, h.root, tuple(s.agent_args),
                     tuple(sorted(p.host_labels(h).items())), s.runs_images)
             for h in s.hosts]
    wheel: Path | Callable[[], Path] = Path(s.wheel) if s.wheel else source_wheel
    return SshProvider(p.name, hosts, server_url, lambda: join_token(1), wheel,
                       Path(s.identity_file), Path(s.known_hosts), timeout_s=s.timeout_s)


def provider_limits(spec: PoolSpec | None) -> dict[str, ProviderLimits]:
    return {p.name: _limits(p) for p in (spec.providers if spec is not None else ())
            if p.kind != "static"}


def _limits(p: ProviderSpec) -> ProviderLimits:
    return ProviderLimits(p.min_nodes, p.max_nodes, None if p.max_spend_per_hour is None
                          else Decimal(repr(p.max_spend_per_hour)), p.idle_timeout,
                          tuple(sorted(p.idle_timeouts.items())))


# -- the autoscaler -----------------------------------------------------------------------------
class StoreProviders:
    """The autoscaler's `reload`: the store's renting providers, each built once per spec (a
    changed spec is rebuilt; an unchanged one keeps its object and its memory)."""

    def __init__(self, store: Store, cluster_id: str, server_url: str,
                 join_token: JoinToken,
                 build: Callable[[ProviderSpec], Provider] | None = None) -> None:
        self.store, self.cluster_id, self.server_url = store, cluster_id, server_url
        self.join_token = join_token
        self.build = build or (lambda p: build_provider(p, cluster_id, server_url, join_token))
        self._built: dict[str, tuple[str, Provider]] = {}
        #: retiring providers with a deadline (`corral providers rm --timeout/--force`)
        self.deadlines: dict[str, float] = {}

    def __call__(self) -> tuple[dict[str, Provider], dict[str, ProviderLimits], frozenset[str]]:
        with self.store.read() as conn:
            declared = declared_providers(conn)
        providers: dict[str, Provider] = {}
        for d in declared:
            key = hashlib.sha256(json.dumps(d.spec.model_dump(mode="json"),
                                            sort_keys=True).encode()).hexdigest()
            cached = self._built.get(d.spec.name)
            if cached is None or cached[0] != key:
                try:
                    cached = (key, self.build(d.spec))
                except Exception as e:  # a provider that cannot be built must not stop the others
                    log.warning("provider %s cannot be built: %s", d.spec.name, e)
                    continue
                self._built[d.spec.name] = cached
            providers[d.spec.name] = cached[1]
        limits = {d.spec.name: _limits(d.spec) for d in declared}
        retiring = frozenset(d.spec.name for d in declared if d.lifecycle == RETIRING)
        self.deadlines = {d.spec.name: d.retire_by for d in declared
                          if d.lifecycle == RETIRING and d.retire_by is not None}
        return providers, limits, retiring


def autoscaler_from_pool(store: Store, spec: PoolSpec | None, cluster_id: str, server_url: str,
                         now: Callable[[], float], config: AutoscalerConfig | None = None,
                         providers: Mapping[str, Provider] | None = None,
                         build: Callable[[ProviderSpec], Provider] | None = None,
                         every_s: float = 30.0) -> PoolAutoscaler:
    """The autoscaler over the store's renting providers (the pool file's, written to the
    store at start-up, and those added at run time). With `providers`, those only (tests).
    Its pace and overall spend cap: the pool file's `autoscaler:` unless `config` is given."""
    paced = spec.autoscaler if spec is not None else None
    if config is None:
        config = _config(paced) if paced is not None else AutoscalerConfig()
        every_s = paced.every if paced is not None else every_s
    budget = Budget(Decimal(repr(paced.max_spend_per_hour))
                    if paced is not None and paced.max_spend_per_hour is not None else None)

    def join_token(uses: int) -> str:
        from corral.store.agents import create_join_token

        with store.write() as conn:
            _, token = create_join_token(conn, "autoscaler", now(), name="autoscaler",
                                         uses=uses, expires_at=now() + config.join_timeout_s)
        return token

    reload = None if providers is not None else StoreProviders(
        store, cluster_id, server_url, join_token, build)
    return PoolAutoscaler(store, dict(providers or {}), cluster_id, server_url, join_token,
                          config, provider_limits(spec), budget, every_s=every_s,
                          joined=lambda ids: _joined(store, ids), reload=reload,
                          retired=lambda name: mark_removed(store, name, now()),
                          offers_seen=spot_prices_hook(lambda: None))


def _config(a: AutoscalerSpec) -> AutoscalerConfig:
    return AutoscalerConfig(idle_timeout_s=a.idle_timeout, join_timeout_s=a.join_timeout,
                            backoff_base_s=a.backoff_base, backoff_max_s=a.backoff_max,
                            spot_fallback_after=a.spot_fallback_after,
                            move_premium=a.move_premium,
                            cancel_unneeded_after_s=a.cancel_unneeded_after,
                            max_instances_per_decision=a.max_instances_per_decision,
                            max_waiting_considered=a.max_waiting_considered,
                            replace_min_saving=a.replace_min_saving,
                            replace_min_age_s=a.replace_min_age,
                            consolidate_min_age_s=a.consolidate_min_age,
                            spot_risk={name: SpotRisk(r.mtbi, r.notice, r.restart)
                                       for name, r in sorted(a.spot_risk.items())})


def _joined(store: Store, instance_ids: Sequence[str]) -> dict[str, str]:
    """instance id -> node id, from the agents that joined reporting their instance id."""
    from corral.store.agents import AgentNodeRow

    with store.read() as conn:
        rows = conn.execute(select(AgentNodeRow.instance_id, AgentNodeRow.node_id)
                            .where(AgentNodeRow.instance_id.in_(list(instance_ids)),
                                   AgentNodeRow.lost_at.is_(None)))
        return {r.instance_id: r.node_id for r in rows}
