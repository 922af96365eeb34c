"""Migration on heterogeneity: when a running job is worth moving to a faster accelerator.

One rule, shared by the live control plane (`corral.control.migration`) and the simulator
(`corral.sim.gavel_replay`): a running job that is preemptible and checkpoints, on model a,
moves to model b, where enough devices are free, when the time it saves exceeds twice the
restart cost (once to pay for the restart, once as a margin against a wrong throughput
estimate):

    saved = steps_left / rate(a) - steps_left / rate(b)
    gain  = saved - restart_s   if saved > 2 * restart_s   else 0   (stay)

Largest gain first, at most `max_per_step` moves per decision, and a job moved less than
`min_interval_s` ago stays where it is (a wrong estimate must not bounce it between models).
Rates are steps/s or any unit in which the two models compare (a job's stated `throughput`,
or the per (kind, model) estimates learned from progress reports); a model without a rate is
never a destination. Gavel (Narayanan et al., OSDI 2020) reallocates every round and pays the
restart each time; this rule moves only when the remaining work pays for it.

Pure: no clock (`now` is passed in), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["MIGRATED", "MigrationCandidate", "MigrationMove", "MigrationRule", "choose",
           "migration_gain"]

#: the stop reason (and event reason) of a job stopped to move to faster devices: requeued
#: from its checkpoint, no restart spent (`corral.control.outcome`)
MIGRATED: Final = "Migrated"


def migration_gain(steps_left: float, rate_now: float, rate_there: float, restart_s: float
                   ) -> float:
    """Seconds a move saves net of its restart, or 0 when the rule says stay: the saving
    must exceed twice the restart cost.

    >>> migration_gain(36_000, 1.0, 3.0, 60)  # 10 h on a K80, 3.3 h on a V100
    23940.0
    >>> migration_gain(100, 1.0, 3.0, 60)  # 67 s saved: not worth two restarts
    0.0
    """
    if rate_now <= 0 or rate_there <= rate_now:
        return 0.0
    saved = steps_left / rate_now - steps_left / rate_there
    return saved - restart_s if saved > 2 * restart_s else 0.0


@dataclass(frozen=True)
class MigrationRule:
    """The knobs (the pool file's `scheduler.migration`); off unless `enabled`."""

    enabled: bool = False
    #: seconds a move costs without progress: stop, requeue, load the checkpoint, warm up
    restart_s: float = 60.0
    #: moves started per decision (per control loop step)
    max_per_step: int = 1
    #: a job moved less than this long ago is not moved again
    min_interval_s: float = 1800.0


@dataclass(frozen=True)
class MigrationCandidate:
    """A running job that may move: preemptible, checkpointing, with known progress."""

    workload_id: str
    model: str  # the accelerator model it runs on
    devices: int  # whole devices it needs where it goes (workers x GPUs per worker)
    steps_left: float
    rates: Mapping[str, float] = field(default_factory=dict)  # per model, one unit
    last_moved: float | None = None


@dataclass(frozen=True)
class MigrationMove:
    workload_id: str
    source: str
    target: str
    gain_s: float


def choose(candidates: Iterable[MigrationCandidate], free: Mapping[str, int],
           rule: MigrationRule, now: float) -> list[MigrationMove]:
    """The moves worth making now, largest gain first, each taking its devices out of `free`
    (whole free devices per model) so two moves never count on the same ones.

    >>> job = MigrationCandidate("a", "K80", 1, 36_000, {"K80": 1.0, "V100": 3.0})
    >>> choose([job], {"V100": 1}, MigrationRule(enabled=True), now=0.0)
    [MigrationMove(workload_id='a', source='K80', target='V100', gain_s=23940.0)]
    """
    if not rule.enabled or rule.max_per_step <= 0:
        return []
    left = dict(free)
    options: list[tuple[float, str, str, MigrationCandidate]] = []
    for c in candidates:
        if c.last_moved is not None and now - c.last_moved < rule.min_interval_s:
            continue
        rate_now = c.rates.get(c.model)
        if rate_now is None:
            continue  # how fast it runs here is unknown: no saving can be told
        for model, rate in c.rates.items():
            gain = migration_gain(c.steps_left, rate_now, rate, rule.restart_s)
            if gain > 0:
                options.append((-gain, c.workload_id, model, c))
    moves: list[MigrationMove] = []
    moved: set[str] = set()
    for neg_gain, wid, model, c in sorted(options, key=lambda o: o[:3]):
        if wid in moved or left.get(model, 0) < c.devices:
            continue
        left[model] -= c.devices
        moved.add(wid)
        moves.append(MigrationMove(wid, c.model, model, -neg_gain))
        if len(moves) >= rule.max_per_step:
            break
    return moves
