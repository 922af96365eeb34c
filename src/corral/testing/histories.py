"""Random histories for a control plane on the fake backend: one driver for the property tests
that compare the loop's incremental state with a full reload (tests/control/test_live_state.py)
and its view of the backend with the backend's full report (test_reconcile_changes.py).

`ACTIONS` draws a list of (kind, a, b); `act(rig, action)` plays one on a rig that has a store,
a fake world and backend, a loop, a manual clock, `submit(**fields)`, `step(n)` and
`new_loop(backend)` (tests/control/rig.py's `Rig`): submissions (some with a max_runtime the
loop enforces), steps, workers finishing or failing, cancellations, cordons, queue edits and a
second loop taking over."""

from __future__ import annotations

from typing import Any, Protocol

from hypothesis import strategies as st

from corral.backends.fake import FakeBackend, FakeWorld
from corral.control import ControlLoop, ManualClock
from corral.control.cancellation import cancel
from corral.core.model import Queue
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W

__all__ = ["ACTIONS", "Action", "HistoryRig", "act"]

Action = tuple[str, int, int]

ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.sampled_from([1, 2, 4]), st.integers(1, 2)),
    st.tuples(st.just("limited"), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("step"), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("finish"), st.integers(0, 20), st.integers(0, 1)),
    st.tuples(st.just("cancel"), st.integers(0, 20), st.just(0)),
    st.tuples(st.just("cordon"), st.integers(0, 1), st.integers(0, 1)),
    st.tuples(st.just("queue"), st.integers(1, 16), st.just(0)),
    st.tuples(st.just("takeover"), st.just(0), st.just(0)),
), min_size=5, max_size=30)


class HistoryRig(Protocol):
    store: Store
    world: FakeWorld
    backend: FakeBackend
    loop: ControlLoop
    clock: ManualClock

    def submit(self, **fields: Any) -> str: ...
    def step(self, n: int = 1, dt: float = 1.0) -> None: ...
    def new_loop(self, backend: FakeBackend, holder: str | None = None) -> ControlLoop: ...


def act(rig: HistoryRig, action: Action) -> None:
    """Play one action (nodes are n0, n1; the queue is "q")."""
    kind, a, b = action
    if kind == "submit":
        rig.submit(gpus=a, workers=b, name=f"w{a}{b}")
    elif kind == "limited":  # stopped by the loop once it has run this long
        rig.submit(name="short", max_runtime=f"{a}s")
    elif kind == "step":
        rig.step(a)
    elif kind in ("finish", "cancel"):
        with rig.store.read() as c:
            active = W.load_active(c)
        if not active:
            return
        rec = active[a % len(active)]
        if kind == "cancel":
            cancel(rig.store, rec.id, rig.clock.now(), "ann")
        elif (rec.id, rec.attempt) in rig.world.workers:
            (rig.backend.finish if b == 0 else rig.backend.fail)(rec.id, rec.attempt)
    elif kind == "cordon":
        with rig.store.write() as c:
            P.set_cordoned(c, f"n{a}", bool(b))
    elif kind == "queue":
        with rig.store.write() as c:
            P.upsert_queue(c, Queue("q", quota_gpus=float(a)))
    elif kind == "takeover":  # a new leader over the same machines: reloads, then goes on
        rig.loop.leadership.resign()
        rig.backend = FakeBackend(world=rig.world, check_capacity=True)
        rig.loop = rig.new_loop(rig.backend)
        rig.step()
