"""The SLO lower bound (corral.sim.serve_bound): below what every simulated policy is billed, and
the slack and the wait both counted right."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from corral.sim.serve import ServeOptions, run_serve
from corral.sim.serve_bound import mandatory_parts, slo_bound
from corral.sim.serve_model import PROFILES
from corral.sim.serve_trace import synthetic_requests

F = np.float64


@pytest.mark.parametrize(("t1", "t2", "least"), [
    (0.0, 2.0, 0.0),  # started at 2 s it runs nothing before 2 s
    (2.0, 4.0, 2.0),  # whichever start, it runs all of [2, 4)
    (4.0, 6.0, 0.0),  # started at 0 s it is over by 4 s
    (0.0, 6.0, 4.0),  # the whole hold lies inside whatever the start
    (1.0, 5.0, 3.0),  # start 0 leaves [1, 4) inside, start 2 leaves [2, 5): 3 either way
], ids=["before-latest-start", "always-running", "after-earliest-end", "covers-all", "middle"])
def test_mandatory_part_is_the_least_over_every_start(t1: float, t2: float, least: float) -> None:
    # one request arriving at 0, waiting at most 2 s, holding a slot 4 s
    got = mandatory_parts(np.array([0.0]), np.array([2.0]), np.array([4.0]), np.array([t1]),
                          np.array([t2]))
    assert got[0] == pytest.approx(least)


def _bound(arrival: list[float], hold: float, slo_target: float, whole: bool = True) -> float:
    n = len(arrival)
    return slo_bound(np.array(arrival, dtype=F), np.zeros(n), np.full(n, hold), max_batch=8,
                     slo_s=2.0, slo_target=slo_target, cold_start_s=60.0, start_s=0.0,
                     window_s=2.0, interval_windows=(1, 5),
                     whole_replicas=whole).replica_hours * 3600


def test_sixteen_long_requests_at_once_need_two_replicas_while_they_run() -> None:
    # 16 requests of 100 s at t=0, 8 slots a replica: two replicas for ~100 s, less the two
    # windows not counted and the over-count allowance (module docstring): between 180 and 200
    got = _bound([0.0] * 16, 100.0, 1.0)
    assert 180.0 <= got <= 200.0


def test_requests_out_of_the_slo_still_need_their_work_done() -> None:
    # half may miss the SLO, but all 16 x 100 s of work still runs after they arrive: one
    # replica for 200 s costs what two for 100 s do, so the slack saves next to nothing. (They
    # arrive at 10 s: the first two windows are not billed, a relaxation that work arriving in
    # them may use.)
    # (the linear relaxation: with 16 identical requests the integer program's search is long)
    strict, slack = (_bound([10.0] * 16, 100.0, share, whole=False) for share in (1.0, 0.5))
    assert slack <= strict
    assert slack >= strict - 2 * 2.0 * 2  # at most the over-count allowance of two windows


def test_a_request_may_wait_within_its_ttft_budget_for_a_slot() -> None:
    # 8 requests of 100 s at 10 s, 8 more at 109 s: waiting 1 s (budget 2 s) they take the
    # first ones' slots at 110 s, so one replica for ~200 s serves all; without the wait a
    # second replica (and its cold start) would be needed for the overlap
    arrival = np.array([10.0] * 8 + [109.0] * 8)
    got = slo_bound(arrival, np.zeros(16), np.full(16, 100.0), max_batch=8, slo_s=2.0,
                    slo_target=1.0, cold_start_s=60.0, window_s=2.0).replica_hours * 3600
    assert 190.0 <= got <= 202.0


def test_the_slack_lets_a_short_spike_go_unserved() -> None:
    # 8 requests fill one replica for 600 s; 8 more arrive at 300 s for 4 s. Serving the spike
    # in the SLO takes a second replica and its cold start; with half allowed out of the SLO the
    # spike waits for room and the cold start is saved
    arrival = np.array([0.0] * 8 + [300.0] * 8)
    hold = np.array([600.0] * 8 + [4.0] * 8)
    strict, slack = (slo_bound(arrival, np.zeros(16), hold, max_batch=8, slo_s=2.0,
                               slo_target=share, cold_start_s=60.0, window_s=2.0).replica_hours
                     for share in (1.0, 0.5))
    assert (strict - slack) * 3600 >= 60.0 - 2 * 2.0  # the cold start less its allowance


@pytest.mark.parametrize("seed", [1, 2])
def test_no_simulated_policy_is_billed_less_than_the_bound_for_what_it_reached(seed: int) -> None:
    # the linear relaxation is below the integer program, so this checks the accounting (the
    # over-count allowance, the cold start charged, work conservation) that both share
    req = synthetic_requests(seed, ((150.0, 2.0), (300.0, 6.0), (450.0, 2.0)))
    opts = ServeOptions(profile=dataclasses.replace(PROFILES["a100"], cold_start_s=30.0),
                        warmup_s=60.0)
    prof = opts.profile
    for policy in ("static-mean", "kpa", "corral", "static-peak"):
        r = run_serve(req, policy, opts)
        b = slo_bound(req.arrival_s, prof.prefill_s(req.prompt_tokens),
                      prof.service_s(req.prompt_tokens, req.output_tokens),
                      max_batch=prof.max_batch, slo_s=opts.slo_ttft_s,
                      slo_target=r.within_slo - 1e-9, cold_start_s=prof.cold_start_s,
                      start_s=opts.warmup_s, window_s=2.0, interval_windows=(1, 5),
                      whole_replicas=False)
        assert b.status == "optimal"
        assert b.replica_hours <= r.replica_hours, policy


def test_a_bad_window_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="window_s: must be > 0"):
        _ = slo_bound(np.array([0.0]), np.zeros(1), np.ones(1), max_batch=8, slo_s=2.0,
                      slo_target=1.0, cold_start_s=60.0, window_s=0.0)
