"""An in-process API over a store and a fake backend, with an admin and a queue member."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

with warnings.catch_warnings():
    # Starlette (>= 1.x) deprecates its TestClient on httpx in favour of httpx2, which the
    # project does not depend on; the client itself works the same.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from sqlalchemy import func, select

from corral.api import ApiContext, create_app
from corral.api.limits import ApiLimits
from corral.backends.fake import FakeBackend
from corral.control import ManualClock, Submissions
from corral.core.model import CapacityKind, Node, Queue
from corral.store import Store
from corral.store import auth as A
from corral.store import pool as P
from corral.store.schema import (
    ApiToken,
    AuditEntry,
    Event,
    IdempotencyKey,
    Membership,
    QueueRow,
    User,
    WorkloadRow,
)
from corral.store.secrets import Fernet, SecretBox


@dataclass
class Api:
    store: Store
    client: TestClient
    backend: FakeBackend
    admin: dict[str, str]
    ann: dict[str, str]  # a user in queue "team-a" only

    def rows(self) -> dict[str, int]:
        """Row counts of the tables a request could add to."""
        with self.store.read() as c:
            return {t.__tablename__: c.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (WorkloadRow, Event, QueueRow, User, Membership, ApiToken,
                              AuditEntry, IdempotencyKey)}


def build(store: Store, limits: ApiLimits | None = None, backend_name: str = "fake") -> Api:
    """`backend_name="local"` turns on the submission checks of a pool whose workers run on this
    host (e.g. working_dir must be a directory here), as `corral up` with the local backend."""
    nodes = [Node(f"n{i}", "local", "H100", 4, 81920, 64_000, 262_144,
                  capacity_kind=CapacityKind.OWNED) for i in range(2)]
    with store.write() as c:
        P.sync_nodes(c, [{"name": "local"}], nodes)
        P.upsert_queue(c, Queue("team-a", quota_gpus=4))
        P.upsert_queue(c, Queue("team-b", quota_gpus=4, limit_gpus=6))
        A.create_user(c, "root", "admin", [], 0.0)
        A.create_user(c, "ann", "user", ["team-a"], 0.0)
        admin, ann = A.create_token(c, "root", 0.0), A.create_token(c, "ann", 0.0)
    backend = FakeBackend(nodes)
    if store.secret_box is None:  # as `corral up` gives it one (corral.store.secrets)
        store.secret_box = SecretBox([Fernet.generate_key()])
    ctx = ApiContext(store, Submissions(store), clock=ManualClock(), logs=backend,
                     backend_name=backend_name, limits=limits or ApiLimits())
    client = TestClient(create_app(ctx), raise_server_exceptions=False)
    return Api(store, client, backend, {"Authorization": f"Bearer {admin}"},
               {"Authorization": f"Bearer {ann}"})


def job(**fields: object) -> dict[str, object]:
    return {"name": "train", "queue": "team-a", "gpus": 1, "command": ["python", "t.py"],
            **fields}
