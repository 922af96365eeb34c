"""A control plane on a fake backend and a manual clock, driven step by step."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.backends.fake import FakeBackend, FakeWorld
from corral.control import ControlLoop, ControlSettings, ManualClock, Submissions
from corral.control.admission import Admission
from corral.core.model import CapacityKind, Node, Queue
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store import pool as P
from corral.store import workloads as W
from corral.store.workloads import WorkloadRecord

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def nodes(count: int = 2, gpus: int = 4) -> list[Node]:
    return [Node(f"n{i}", "local", "H100", gpus, 81920, 64_000, 262_144,
                 capacity_kind=CapacityKind.OWNED) for i in range(count)]


@dataclass
class Rig:
    store: Store
    world: FakeWorld = field(default_factory=FakeWorld)
    clock: ManualClock = field(default_factory=ManualClock)
    admission: Admission | None = None

    def __post_init__(self) -> None:
        self.nodes = nodes()
        with self.store.write() as c:
            P.sync_nodes(c, [{"name": "local"}], self.nodes)
            P.upsert_queue(c, Queue("q", quota_gpus=8))
        self.backend = FakeBackend(self.nodes, world=self.world, check_capacity=True)
        self.loop = self.new_loop(self.backend)
        self.submissions = Submissions(self.store)

    def new_loop(self, backend: FakeBackend, holder: str | None = None) -> ControlLoop:
        from corral.control import Leadership

        settings = ControlSettings(stop_grace_s=5.0)
        return ControlLoop(self.store, backend, clock=self.clock, settings=settings,
                           admission=self.admission,
                           leadership=Leadership(self.store, holder=holder, ttl_s=15.0))

    def submit(self, **fields: Any) -> str:
        spec = {"name": "w", "queue": "q", "gpus": 1, "cpu": 0.1, "memory": 64,
                "command": ["run"], **fields}
        recs = self.submissions.submit(WorkloadSpec.model_validate(spec), "ann", self.clock.now())
        return recs[0].id

    def step(self, n: int = 1, dt: float = 1.0) -> None:
        for _ in range(n):
            self.loop.step()
            self.clock.advance(dt)

    def get(self, wid: str) -> WorkloadRecord:
        with self.store.read() as c:
            rec = W.get_workload(c, wid)
        assert rec is not None
        return rec

    def state(self, wid: str) -> str:
        return self.get(wid).state

    def transitions(self, wid: str) -> list[tuple[str, str, str]]:
        with self.store.read() as c:
            return [(e.from_state, e.to_state, e.reason)
                    for e in W.list_events(c, workload_id=wid) if e.kind == "transition"]


def admin_api(rig: Rig) -> tuple[TestClient, dict[str, str]]:
    """The API over the rig's store, submissions, clock and backend, and an admin's header: to
    read what a user is shown of the state the rig's loop left."""
    from corral.api import ApiContext, create_app
    from corral.store import auth as A

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's TestClient on httpx (see tests/api/harness)
        from fastapi.testclient import TestClient

    with rig.store.write() as c:
        A.create_user(c, "root", "admin", [], 0.0)
        token = A.create_token(c, "root", 0.0)
    ctx = ApiContext(rig.store, rig.submissions, clock=rig.clock, logs=rig.backend,
                     backend_name="fake")
    return (TestClient(create_app(ctx), raise_server_exceptions=False),
            {"Authorization": f"Bearer {token}"})
