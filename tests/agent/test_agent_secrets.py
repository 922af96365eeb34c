"""The agent backend's stored launch records keep a launch's secret values sealed: the
agent_workers row does not hold the value, the agent is handed it opened, and the same launch
again is the same spec (no LaunchConflict)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy import select

from agent.test_agent_backend import Clock, _join, _spec, store  # noqa: F401  (the fixture)
from corral.backends.agent import AgentBackend
from corral.store import Store
from corral.store import agents as AG
from corral.store import secrets as S
from corral.store.agents import StoreMailbox

VALUE = "sk-live-4242-secret"


def test_secret_values_are_sealed_in_the_store_and_opened_for_the_agent(
        store: Store, tmp_path: Path) -> None:  # noqa: F811
    store.secret_box = S.SecretBox.load(tmp_path)
    clock = Clock()
    _join(store, "a", clock.t)
    backend = AgentBackend(StoreMailbox(store), heartbeat_timeout_s=30, restart_grace_s=0,
                           clock=clock)
    spec = dataclasses.replace(_spec("a"), secret_env={"API_KEY": VALUE})
    backend.launch(spec)
    with store.read() as c:
        row = c.execute(select(AG.AgentWorker.spec)).scalar_one()
        _, handed = AG.assignments_for(c, "a")
    assert VALUE not in str(row) and row["secret_env"] == {} and row[AG.SEALED_ENV]
    assert AG.opened_spec(store, handed[0].spec)["secret_env"] == {"API_KEY": VALUE}
    backend.launch(spec)  # the same attempt again: recognised, not a conflict
