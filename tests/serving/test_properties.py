"""Invariants over any load: the decision stays within [min, max], and its reason quotes the
figures the scaler really saw (recomputed here from the observations)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.serving import ScalingConfig, ServiceScaler, Target, TargetKind

ticks = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 30), st.floats(0, 1),
                           st.integers(0, 20)), min_size=1, max_size=60)


def _num(x: float) -> str:
    return f"{round(x, 1):g}"


@settings(max_examples=150, deadline=None)
@given(ticks=ticks, lo=st.integers(0, 5), span=st.integers(0, 20), start=st.integers(0, 30),
       step=st.sampled_from([1.0, 2.0, 15.0]), panic=st.sampled_from([None, 2.0]),
       util=st.sampled_from([0.5, 0.7, 1.0]), with_running=st.booleans())
def test_bounds_and_true_reasons(ticks: list[tuple[int, int, float, int]], lo: int, span: int,
                                 start: int, step: float, panic: float | None, util: float,
                                 with_running: bool) -> None:
    cfg = ScalingConfig(targets=(Target(kind=TargetKind.IN_FLIGHT, value=8),), min_replicas=lo,
                        max_replicas=max(lo + span, 1), panic_threshold=panic,
                        target_utilization=util, scale_to_zero_after_s=30)
    scaler = ServiceScaler(cfg)
    current, seen = start, []
    for k, (in_flight, arrivals, share, finished) in enumerate(ticks):
        now = k * step
        running = round(in_flight * share) if with_running else None
        scaler.observe(now, in_flight=in_flight, arrivals=arrivals, latencies=[1.0] * finished,
                       running=running)
        seen.append((now, in_flight))
        d = scaler.decide(now, current=current)
        assert cfg.min_replicas <= d.desired <= cfg.max_replicas
        head = f"scaled {current} -> {d.desired}" if d.desired != current else f"held at {current}"
        assert d.reason.startswith(head)
        if d.governing is not None:
            w = d.governing.window_s
            inside = [f for t, f in seen if t > now - w]
            true_mean = sum(inside) / len(inside)
            assert abs(d.governing.observed - true_mean) < 1e-9
            assert f"{_num(true_mean)} in flight ({_num(w)} s" in d.reason
            if d.governing.needed is not None:  # the backlog rule only ever lowers the ask
                assert d.governing.needed < true_mean
                assert f"but {_num(d.governing.needed)} needed" in d.reason
        current = d.desired
