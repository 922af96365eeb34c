"""The session's per-node index of running work (`CoreSession.on_node`, kept by a statement
listener) answers as a pass over everything running would, through a replay with node failures,
spot interruptions, GPU faults, preemptions and consolidation moves; the replay asks it where it
used to scan all running work (a node going down, a GPU fault, the cordons' holds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from corral.sim.failures import FailureModel
from corral.sim.policies import replay_policy
from corral.sim.replay import ReplayOptions, run_replay
from corral.sim.session import CoreSession
from corral.sim.synthetic import SyntheticSpec, synthetic_trace


def _scan(session: CoreSession) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for wid, assignments in session.where.items():
        for a in assignments:
            there = out.setdefault(a.node_id, {})
            there[wid] = there.get(wid, 0) + 1
    return out


def _checked(method: Callable[..., Any], seen: list[int]) -> Callable[..., Any]:
    def run(self: CoreSession, *args: Any, **kwargs: Any) -> Any:
        out = method(self, *args, **kwargs)
        assert {n: w for n, w in self.on_node.items() if w} == _scan(self)
        seen.append(len(self.where))
        return out
    return run


@pytest.mark.parametrize("per_gpu", [True, False])
def test_node_index_equals_a_scan(per_gpu: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    for name in ("cycle", "finish", "node_down"):
        monkeypatch.setattr(CoreSession, name, _checked(getattr(CoreSession, name), seen))
    trace = synthetic_trace(SyntheticSpec(tasks=300, nodes=8, load=1.3, seed=2))
    model = FailureModel(node_mtbf_s=86400, gpu_mtbf_s=12 * 3600, spot_fraction=0.3,
                         spot_mtbi_s=43200, checkpoint_interval_s=1800, device_cordons=per_gpu)
    report = run_replay(trace, replay_policy("corral", "corral", trace), 2,
                        ReplayOptions(interval_s=10.0, failures=model)).report
    assert report["completed"] == 300
    assert report["gpu_faults"] and report["node_failures"] and report["spot_interruptions"]
    assert report["preemptions"]  # evictions (and moves) went through the listener too
    assert max(seen) > 1  # checked while work ran
