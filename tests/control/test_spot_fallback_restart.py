"""A workload's spot interruptions survive a control-plane restart (control/spot_inputs.py
`resume`): a new leader reads each live workload's interruptions and their places back from
the audit records, so the fallback counts on. Before, a restart forgot them: a job interrupted
once before and once after it was rented spot again, past `spot_fallback_after` (2)."""

from __future__ import annotations

import pytest
from tests.control.test_spot_fallback import Plane

from corral.backends.fake import FakeBackend
from corral.control.autoscale import PoolAutoscaler
from corral.control.spot_inputs import ON_DEMAND_ONLY, SPOT_KEPT
from corral.core.model import CapacityKind
from corral.store import Store


def _restart(plane: Plane) -> None:
    """The server dies; a new one leads (a new loop and autoscaler, same store and cloud)."""
    old = plane.rig.loop.autoscaler
    assert old is not None
    plane.rig.clock.advance(16.0)  # the old leader's lease runs out
    # a new process: its own backend object over the same running workers (the world)
    plane.rig.backend = FakeBackend(list(plane.rig.world.nodes.values()), world=plane.rig.world,
                                    check_capacity=True)
    plane.rig.loop = plane.rig.new_loop(plane.rig.backend, holder="second")
    plane.rig.loop.autoscaler = PoolAutoscaler(
        plane.store, {"cloud": plane.cloud}, "c1", "https://corral.test", lambda n: "cjt_test",
        old.config, every_s=old.every_s,
        joined=lambda ids: {i: plane.joined[i] for i in ids if i in plane.joined})


@pytest.mark.parametrize("via_host", [False, True], ids=["provider-notice", "host-notice"])
def test_the_count_goes_on_across_a_restart(store: Store, via_host: bool) -> None:
    plane = Plane(store, None, via_host)
    wid = plane.submit(None)  # no checkpoint: the count decides (on-demand after 2)
    first = plane.run_on_new_instance(wid, seen=0)
    plane.interrupt(wid, first)
    second = plane.run_on_new_instance(wid, seen=1)
    assert second.offer.capacity_kind == CapacityKind.SPOT  # 1 of 2
    _restart(plane)
    plane.rig.step(12)  # the new leader's first passes: nothing happens to the running job
    assert plane.rig.state(wid) == "running" and len(plane.cloud.live) == 2
    plane.interrupt(wid, second)
    plane.until(lambda: len(plane.cloud.live) > 2, "an instance rented for the job")
    assert plane.launched()[-1].offer.capacity_kind == CapacityKind.ON_DEMAND
    told = plane.verdicts(wid)
    assert [r for r, _ in told] == [SPOT_KEPT, ON_DEMAND_ONLY]  # none told twice
    assert "interrupted 2 times, spot_fallback_after is 2" in told[-1][1]
    autoscaler = plane.rig.loop.autoscaler
    assert autoscaler is not None
    assert autoscaler.state.interruptions[wid].places == (("cloud", "r1a"), ("cloud", "r1a"))
