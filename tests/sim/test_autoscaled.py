"""Replay on rented capacity: every instance launched is joined and returned, the bill is the
rented instance-hours, and the same seed gives the same numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from corral.autoscale.pool import AutoscalerConfig
from corral.sim.autoscaled import AutoscaleOptions, run_autoscaled
from corral.sim.clouds import THREE_CLOUDS, cloud_set
from corral.sim.failures import FailureModel
from corral.sim.policies import replay_policy
from corral.sim.replay import ReplayOptions
from corral.sim.synthetic import SyntheticSpec, synthetic_trace

TRACE = synthetic_trace(SyntheticSpec(tasks=120, nodes=12, load=0.8, seed=3))
POLICY = replay_policy("fifo-backfill", "corral", TRACE)


def run(providers, **kw):
    return run_autoscaled(TRACE, POLICY, AutoscaleOptions(providers, **kw), seed=3).report


@pytest.fixture(scope="module")
def multi():
    return run(THREE_CLOUDS)


def test_all_work_completes_on_rented_capacity(multi) -> None:
    assert multi["completed"] == 120 and multi["never_started"] == 0


def test_no_instance_is_leaked(multi) -> None:
    acct = multi["instances"]
    # every instance launched is returned; each one joined, or was returned on its way
    # (its work started elsewhere first: cancel_unneeded_after_s)
    assert acct["launched"] == acct["terminated"] > 0
    assert acct["launched"] == acct["joined"] + acct.get("cancelled_on_the_way", 0)


def test_the_bill_is_rented_hours_and_idle_is_rented_minus_used(multi) -> None:
    assert multi["cost"] == pytest.approx(sum(multi["cost_by_provider"].values()), abs=0.05)
    assert multi["gpu_hours_idle"] == pytest.approx(
        multi["gpu_hours_rented"] - multi["gpu_hours_used"], abs=0.02)
    assert 0 < multi["gpu_hours_used"] <= multi["gpu_hours_rented"]


def test_same_seed_same_report(multi) -> None:
    again = run(THREE_CLOUDS)
    assert {k: v for k, v in again.items() if k != "wall_seconds"} == \
        {k: v for k, v in multi.items() if k != "wall_seconds"}


def test_one_provider_only_rents_there() -> None:
    report = run(cloud_set("lambda"))
    assert set(report["cost_by_provider"]) == {"lambda"}
    assert report["spot_interruptions"] == 0


def test_spot_interruptions_happen_and_work_still_completes() -> None:
    gcp = replace(cloud_set("gcp")[0], spot_mtbi_s=1800.0)
    report = run((gcp,))
    assert report["spot_interruptions"] > 0 and report["completed"] == 120


def test_a_static_pool_is_up_the_whole_run() -> None:
    lam = cloud_set("lambda")[0]
    pool = {"lambda/h100x8/on-demand/us-east-3a": 3, "lambda/a100x8/on-demand/us-east-3a": 3,
            "lambda/l40sx4/on-demand/us-east-3a": 3}
    report = run((lam,), static=True, static_pool=pool)
    hourly = sum(float(o.price_per_hour) * 3 for o in lam.offers)
    assert report["cost"] == pytest.approx(hourly * report["makespan_s"] / 3600, rel=0.01)
    assert report["instances"]["launched"] == 9


def test_launch_failures_back_off_to_other_offers() -> None:
    flaky = tuple(replace(p, launch_failure_rate=0.5) for p in THREE_CLOUDS)
    report = run(flaky, config=AutoscalerConfig(backoff_base_s=60))
    assert report["instances"]["launch_failures"] > 0 and report["completed"] == 120


def test_stable_qos_work_never_runs_on_spot() -> None:
    """`stable_qos=("LS",)`: LS tasks are non-preemptible, so no spot node ever holds one."""
    gcp = cloud_set("gcp")
    from corral.sim.autoscaled import _Autoscaled
    from corral.sim.replay import ReplayOptions
    sim = _Autoscaled(TRACE, POLICY, 3, ReplayOptions(), AutoscaleOptions(gcp, stable_qos=("LS",)))
    on_spot: set[str] = set()
    start = sim._start

    def watch(now, job, assignments):
        if any("/spot/" in a.node_id for a in assignments):
            on_spot.add(job.task.qos)
        start(now, job, assignments)

    sim._start = watch  # type: ignore[method-assign]
    report = sim.run().report
    assert report["completed"] == 120
    assert on_spot and "LS" not in on_spot  # spot was used, never by LS work


def test_replacing_under_used_nodes_happens_and_costs_less_with_all_work_done(multi) -> None:
    """The same replay with replacement off and on (min age 10 min): nodes are replaced, every
    task still completes, nothing leaks, and the bill is lower."""
    off = run(THREE_CLOUDS, config=AutoscalerConfig(replace_min_saving=None))
    on = run(THREE_CLOUDS, config=AutoscalerConfig(replace_min_age_s=600))
    assert off["instances"].get("replaced", 0) == 0
    assert on["instances"]["replaced"] > 0
    assert on["completed"] == off["completed"] == 120
    assert on["instances"]["launched"] == on["instances"]["terminated"]
    assert on["cost"] < off["cost"]


def test_checkpointed_work_stays_on_spot_while_it_costs_less() -> None:
    # gcp alone, an interruption every 30 min: every task saves all it ran within the notice
    # (the failure model's default), so an interruption costs only the restart and spot stays
    # cheaper than on-demand (corral.autoscale.spot); the plain count moved work to on-demand
    gcp = replace(cloud_set("gcp")[0], spot_mtbi_s=1800.0)
    weighed = run((gcp,))
    counted = run((gcp,), weigh_interruptions=False)
    assert counted["instances"]["fell_back_to_on_demand"] > 0
    assert weighed["instances"].get("fell_back_to_on_demand", 0) == 0
    assert weighed["spot_interruptions"] > 0 and weighed["completed"] == 120
    assert weighed["cost"] < counted["cost"]


def test_work_that_cannot_save_in_time_falls_back_to_on_demand() -> None:
    # a checkpoint takes 600 s to write, the notice is 120 s, no periodic checkpoints: an
    # interruption loses all the task ran, so after its first it gets on-demand only
    gcp = replace(cloud_set("gcp")[0], spot_mtbi_s=1800.0)
    slow = ReplayOptions(failures=FailureModel(checkpoint_write_s=600.0))
    report = run_autoscaled(TRACE, POLICY, AutoscaleOptions((gcp,)), seed=3, replay=slow).report
    assert report["instances"]["fell_back_to_on_demand"] > 0 and report["completed"] == 120
    assert report["gpu_hours_lost"] > 0
