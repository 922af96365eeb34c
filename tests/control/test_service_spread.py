"""A service's replicas are kept apart through the control loop (fake backend, manual clock):
the loop's snapshot names each replica's service as its spread group (`corral.core.spread`)."""

from __future__ import annotations

import pytest

from corral.store import Store

from .rig import Rig
from .test_service_replicas import status, submit_service


@pytest.fixture
def rig(store: Store) -> Rig:
    return Rig(store)


def test_two_replicas_of_a_service_land_on_different_nodes(rig: Rig) -> None:
    """Two nodes of 4 GPUs, two 1-GPU replicas: bin-packing alone would put both on one node.
    A restarted replica comes back on the other node again, not onto the one still running."""
    sid = submit_service(rig, replicas=2)
    rig.step(2)
    assert status(rig, sid) == (2, 2, 0, "serving")
    on = {ls.workload_id: ls.assignments[0].node_id for ls in rig.backend.launches}
    assert sorted(on) == [f"{sid}-r0", f"{sid}-r1"]
    assert sorted(on.values()) == ["n0", "n1"]
    rig.backend.fail(f"{sid}-r0", exit_code=1)
    rig.step()
    rig.clock.advance(5)
    rig.step(2)
    again = rig.backend.launches[-1]
    assert again.workload_id == f"{sid}-r0"
    assert again.assignments[0].node_id != on[f"{sid}-r1"]
