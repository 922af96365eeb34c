"""How often each renting provider's spot instances were taken back, from what corral itself
recorded: the interruption rate the spot rule (`corral.autoscale.spot`) uses for a provider the
pool file gives no `autoscaler.spot_risk`.

    each pass, before the decision (SpotRates.learn):
      audit records after the last one read (one query by id; the first pass reads them all)
        autoscale.launch        its spot instances (detail: offer, instances) -> open, from `at`
        autoscale.interrupted,  an open instance taken back -> closed at `at`, and one more
        agent.spot_notice         interruption of its provider (each instance counted once)
        autoscale.terminate     an open instance returned -> closed at `at`
      an open instance its provider no longer lists (listed this pass) -> closed now
    SpotRates.weighing(config, offers, now): each provider with a spot offer and no spot_risk
      gets SpotRisk(spot.estimated_mtbi(n, T), NOTICE_S, every / 2 + PROVISIONING_GUESS_S),
      n its interruptions, T its spot instance time (closed + the open ones' until now)

The rule and its prior (one interruption in 6 h of spot instance time) are `estimated_mtbi`'s,
in spot.py's docstring. The notice is EC2's two minutes (aws is the one kind that rents spot);
the restart is half a pass (the autoscaler sees the work waiting) plus PROVISIONING_GUESS_S for
a GPU instance's boot, the agent's join and the checkpoint's load: a stated guess, not a
measure. What is kept: the open spot instances, and per provider a count and a sum of seconds;
a restart reads the log again, so the estimate survives it. That first read also collects
where each workload was interrupted (`stopped`), which `SpotInputs.resume` hands once to the
autoscaler's state: a workload's count survives a restart too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from sqlalchemy import select

from corral.autoscale import spot as SP
from corral.autoscale.pool import AutoscalerConfig
from corral.core.model import CapacityKind
from corral.providers.base import CapacityState, Instance, Offer
from corral.store import Store
from corral.store.schema import AuditEntry

__all__ = ["NOTICE_S", "PROVISIONING_GUESS_S", "SpotRates"]

NOTICE_S: Final = 120.0  # EC2's spot interruption notice
PROVISIONING_GUESS_S: Final = 300.0  # boot, join, checkpoint load: a guess (see the docstring)
LAUNCH, TERMINATE = "autoscale.launch", "autoscale.terminate"
INTERRUPTED = ("autoscale.interrupted", "agent.spot_notice")
_ACTIONS = (LAUNCH, TERMINATE, *INTERRUPTED)
_PAGE = 5000
_GONE = (CapacityState.TERMINATED, CapacityState.FAILED)


@dataclass
class SpotRates:
    read_to: int = 0  # the last audit id read
    #: spot instances launched and not yet taken back or returned: id -> (provider, since)
    open: dict[str, tuple[str, float]] = field(default_factory=dict)
    interruptions: dict[str, int] = field(default_factory=dict)  # by provider
    closed_s: dict[str, float] = field(default_factory=dict)  # by provider: ended instances' time
    zones: dict[str, str] = field(default_factory=dict)  # open instance -> its zone
    #: the first read only (a new leader's): where each workload was interrupted, by id, in
    #: order (None: the instance's launch is not in the log), each (instance, workload) once;
    #: taken once by `SpotInputs.resume` (then None, and later records are not collected: the
    #: running process counts its own interruptions in AutoscalerState)
    stopped: dict[str, list[tuple[str, str] | None]] | None = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def learn(self, store: Store, listed: Iterable[Instance], unlisted: Iterable[str],
              now: float, *, read: bool = True) -> None:
        """Read the records since the last call (unless `read` is False: the caller knows
        none was written since); close the open instances gone unrecorded (`listed`: what the
        providers list now; `unlisted`: providers that could not list)."""
        while read:
            q = (select(AuditEntry.id, AuditEntry.at, AuditEntry.action, AuditEntry.target,
                        AuditEntry.detail)
                 .where(AuditEntry.id > self.read_to, AuditEntry.action.in_(_ACTIONS))
                 .order_by(AuditEntry.id).limit(_PAGE))
            with store.read() as conn:
                rows = conn.execute(q).all()
            for r in rows:
                self.read_to = r.id
                self._record(r.action, r.target, r.detail if isinstance(r.detail, dict) else {},
                             float(r.at))
            if len(rows) < _PAGE:
                break
        live = {i.id for i in listed if i.state not in _GONE}
        skip = set(unlisted)
        for iid, (provider, _) in list(self.open.items()):
            if iid not in live and provider not in skip:
                self._close(iid, now)

    def _record(self, action: str, target: str, detail: Mapping[str, Any], at: float) -> None:
        if action == LAUNCH:
            offer = detail.get("offer") or {}
            if str(offer.get("capacity_kind")) != CapacityKind.SPOT:
                return
            ids = [str(i) for i in detail.get("instances") or target.split(",") if i]
            self.open.update((i, (str(offer.get("provider", "")), at)) for i in ids)
            self.zones.update((i, str(offer.get("zone", ""))) for i in ids)
        elif action == TERMINATE:
            self._close(target, at)
        else:
            instance = str(detail.get("instance") or "")
            place = self._close(instance, at)
            if place is not None:
                self.interruptions[place[0]] = self.interruptions.get(place[0], 0) + 1
            if self.stopped is not None:
                self._stopped(instance or target, detail.get("stopped") or [], place)

    def take_stopped(self) -> dict[str, list[tuple[str, str] | None]]:
        """What the first read collected (`stopped`), once: later calls give nothing."""
        stopped, self.stopped = self.stopped or {}, None
        self._seen.clear()
        return stopped

    def _stopped(self, key: str, workloads: Iterable[Any],
                 place: tuple[str, str] | None) -> None:
        """Each workload stopped by this interruption (`key`: the instance, else the node),
        once however many records it has (a host's notice, then the provider's)."""
        for wid in map(str, workloads):
            if self.stopped is not None and (key, wid) not in self._seen:
                self._seen.add((key, wid))
                self.stopped.setdefault(wid, []).append(place)

    def _close(self, instance_id: str, at: float) -> tuple[str, str] | None:
        """Close an open instance: its (provider, zone), or None when it was not open."""
        opened = self.open.pop(instance_id, None)
        zone = self.zones.pop(instance_id, "")
        if opened is None:
            return None
        provider, since = opened
        self.closed_s[provider] = self.closed_s.get(provider, 0.0) + max(at - since, 0.0)
        return provider, zone

    def exposure_s(self, provider: str, now: float) -> float:
        """Spot instance time of `provider` until `now`."""
        return self.closed_s.get(provider, 0.0) + sum(
            max(now - since, 0.0) for p, since in self.open.values() if p == provider)

    def weighing(self, config: AutoscalerConfig, offers: Sequence[Offer], every_s: float,
                 now: float) -> AutoscalerConfig:
        """`config` with an estimated risk for each provider that offers spot and has none."""
        spot = sorted({o.provider for o in offers if o.capacity_kind == CapacityKind.SPOT}
                      - set(config.spot_risk))
        if not spot:
            return config
        guessed = {p: SP.SpotRisk(SP.estimated_mtbi(self.interruptions.get(p, 0),
                                                    self.exposure_s(p, now)),
                                  NOTICE_S, every_s / 2 + PROVISIONING_GUESS_S) for p in spot}
        return replace(config, spot_risk={**guessed, **config.spot_risk})
