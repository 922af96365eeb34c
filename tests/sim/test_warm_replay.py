"""The replay opens each cycle from the opening kept since the last (`WarmStart`, the control
plane's path) and decides exactly what it decides when every cycle sorts and shapes its work
afresh: the same report, the same time series, whatever the policy."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from corral.core.warm_start import WarmStart
from corral.sim import session as session_module
from corral.sim.policies import replay_policy
from corral.sim.replay import ReplayOptions, run_replay
from corral.sim.synthetic import SyntheticSpec, synthetic_trace


class _Counted(WarmStart):
    """A WarmStart that counts its openings (to show the kept state, not rebuilds, served)."""

    made: ClassVar[list[_Counted]] = []

    def __init__(self) -> None:
        super().__init__()
        self.opens = 0
        _Counted.made.append(self)

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.opens += 1
        return super().open(*args, **kwargs)


Run = dict[str, Any]


def _both(seed: int, policy: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Run, Run, _Counted]:
    # overloaded (load 1.3) so work waits, gangs reserve and the corral policy preempts
    trace = synthetic_trace(SyntheticSpec(tasks=400, nodes=8, load=1.3, seed=seed))
    chosen = replay_policy(policy, "corral", trace)
    monkeypatch.setattr(session_module, "WarmStart", _Counted)
    runs: dict[bool, Run] = {}
    for warm in (False, True):
        result = run_replay(trace, chosen, seed, ReplayOptions(interval_s=10.0, warm_start=warm))
        report = dict(result.report)
        report.pop("wall_seconds")
        runs[warm] = {"report": report, "series": result.series}
    return runs[False], runs[True], _Counted.made[-1]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("policy", ["corral", "fifo-backfill"])
def test_warm_replay_equals_cold(seed: int, policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cold, warm, kept = _both(seed, policy, monkeypatch)
    assert warm == cold
    report = warm["report"]
    assert report["completed"] == report["tasks"] == 400
    assert kept.opens == report["cycles"]  # every cycle opened warm ...
    assert kept.rebuilds * 2 < kept.opens  # ... mostly from the kept state, not rebuilt
    if policy == "corral":
        assert report["preemptions"] > 0  # the disruptive actions ran on the kept order
