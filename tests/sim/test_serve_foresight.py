"""The foresight schedule (corral.sim.serve_foresight): launched a cold start early, the cheapest
counts for a miss allowance, and a replayed schedule that meets the SLO."""

from __future__ import annotations

import dataclasses

import numpy as np

from corral.sim.serve import ServeOptions, run_serve
from corral.sim.serve_foresight import Scripted, _cheapest, foresight_schedule
from corral.sim.serve_model import PROFILES
from corral.sim.serve_trace import synthetic_requests


def test_a_scheduled_rise_is_asked_for_a_cold_start_before_it_is_needed() -> None:
    s = Scripted(np.array([2, 2, 4, 1]), segment_s=60.0, cold_start_s=60.0)
    asked = [s.decide(t, current=0).desired for t in (0.0, 59.0, 60.0, 119.0, 120.0, 180.0)]
    assert asked == [2, 2, 4, 4, 4, 1]  # 4 from 60 s, ready at 120 s; down only at 180 s


def test_the_counts_are_the_cheapest_within_the_allowance() -> None:
    # two segments: count 1 misses 3 and 1, count 2 misses nothing
    misses = {1: np.array([3, 1]), 2: np.array([0, 0])}
    assert _cheapest(misses, 0).tolist() == [2, 2]
    assert _cheapest(misses, 1).tolist() == [2, 1]  # spend the allowance where it suffices
    assert _cheapest(misses, 4).tolist() == [1, 1]


def test_the_replayed_schedule_meets_the_slo_below_static_peak() -> None:
    req = synthetic_requests(1, ((150.0, 2.0), (300.0, 6.0), (450.0, 2.0)))
    opts = ServeOptions(profile=dataclasses.replace(PROFILES["a100"], cold_start_s=30.0),
                        warmup_s=60.0)
    f = foresight_schedule(req, opts, segment_s=30.0, levels=range(1, 10))
    assert f.result.within_slo >= opts.slo_target
    assert f.result.replica_hours < run_serve(req, "static-peak", opts).replica_hours
    assert max(f.counts[5:10]) > max(f.counts[:5])  # more replicas for the 6/s step


def test_refining_keeps_the_slo_and_never_costs_more() -> None:
    req = synthetic_requests(2, ((150.0, 2.0), (300.0, 6.0), (450.0, 2.0)))
    opts = ServeOptions(profile=dataclasses.replace(PROFILES["a100"], cold_start_s=30.0),
                        warmup_s=60.0)
    plain = foresight_schedule(req, opts, segment_s=60.0, levels=range(1, 10))
    refined = foresight_schedule(req, opts, segment_s=60.0, levels=range(1, 10), refine=True)
    assert refined.result.within_slo >= opts.slo_target
    assert refined.result.replica_hours <= plain.result.replica_hours
    assert sum(refined.counts) <= sum(plain.counts)
