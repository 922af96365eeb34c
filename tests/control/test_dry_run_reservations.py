"""The dry run says which reservation a big candidate waits behind (issue 16).

A stored pending sentence names no holder (whether reservations are held, by whom and until
when moves as they are made, pass on and end); the API adds them at read time. The dry run
tells the plan it makes before anything is stored, so it adds them itself, in the same words
(`core.reasons.waits_behind`, one definition for both).

Here a real loop on a fake backend (2 nodes x 4 GPUs): eight 1-GPU jobs fill both nodes, gang
g1 (2 x 4 GPUs) waits past `reserve_after_s` and holds the one reservation; a dry run of
another such gang waits behind it, through the core and through POST /v1/dry-run.
"""

from __future__ import annotations

from corral.control.submission import DryRun
from corral.spec import WorkloadSpec
from corral.store import Store
from corral.store.reservations import load_reservations

from .rig import Rig, admin_api

GANG = {"name": "big", "queue": "q", "gpus": 4, "workers": 2, "cpu": 0.1, "memory": 64,
        "command": ["run"]}


def _behind_a_reservation(store: Store) -> tuple[Rig, str, float]:
    """The rig with g1 holding the reservation; g1's id and until when."""
    rig = Rig(store)
    small = [rig.submit(name=f"s{i}", gpus=1) for i in range(8)]
    rig.step(2)
    assert {rig.state(w) for w in small} == {"running"}
    g1 = rig.submit(name="g1", gpus=4, workers=2)
    rig.step(4, dt=100.0)  # past reserve_after_s (300 s): g1 reserves
    with store.read() as c:
        [held] = load_reservations(c)
    assert held.workload_id == g1 and held.until is not None
    return rig, g1, held.until


def test_the_dry_run_names_the_reservation_a_big_candidate_waits_behind(store: Store) -> None:
    rig, g1, until = _behind_a_reservation(store)
    out: DryRun = rig.submissions.dry_run(WorkloadSpec.model_validate(GANG), rig.clock.now())
    assert out.outcome == "pending" and out.reason is not None
    head, sep, now = out.reason.message.partition(" (now: ")
    assert sep and now == f"it waits behind nodes reserved for {g1} until t={until:.0f})", (
        out.reason.message)
    assert "reserved for" not in head  # the core's sentence names no holder
    # what the API adds to g2's stored sentence, had it been submitted: the same words
    g2 = rig.submit(name="g2", gpus=4, workers=2)
    rig.step()
    client, admin = admin_api(rig)
    stored = client.get(f"/v1/workloads/{g2}", headers=admin).json()["reason_message"]
    assert stored.endswith(f"it waits behind nodes reserved for {g1} until t={until:.0f})"), (
        stored)


def test_post_dry_run_says_it_too(store: Store) -> None:
    rig, g1, until = _behind_a_reservation(store)
    client, admin = admin_api(rig)
    body = client.post("/v1/dry-run", json=GANG, headers=admin)
    assert body.status_code == 200, body.text
    got = body.json()
    assert got["outcome"] == "pending"
    assert got["reason_message"].endswith(
        f" (now: it waits behind nodes reserved for {g1} until t={until:.0f})"), got
    # a 1-GPU candidate is not held from reserved nodes: told nothing about them
    small = client.post("/v1/dry-run", json={**GANG, "workers": 1, "gpus": 1}, headers=admin)
    assert "reserved for" not in (small.json()["reason_message"] or ""), small.text
