"""/metrics, scraped and parsed with the Prometheus client's parser, agrees with the state:
GPUs by provider, model and queue; pending work by reason; cycles and placements; endings,
restarts, failures and evictions; request latency by route template."""

from __future__ import annotations

import pytest

from corral.store import workloads as W

from .rig import Dash, value


def test_gpus_queues_and_pending_match_the_store(dash: Dash) -> None:
    a = dash.submit(dash.ann, name="a", gpus=2, gpu_models=["H100"])
    dash.submit(dash.bob, name="b", queue="team-b", gpus=0.5, gpu_models=["L4"])
    c = dash.submit(dash.bob, name="c", queue="team-b", gpus=4)  # team-b's limit is 4
    dash.step(2)
    m = dash.scrape()
    assert value(m, "corral_gpus", provider="aws", model="H100") == 4
    assert value(m, "corral_gpus", provider="gcp", model="L4") == 2
    with dash.store.read() as conn:
        held = W.holding_placements(conn)
    by_queue: dict[str, float] = {}
    for h in held:
        by_queue[h.queue] = by_queue.get(h.queue, 0) + h.milli_per_device * len(h.devices) / 1000
    assert by_queue == {"team-a": 2.0, "team-b": 0.5}
    assert value(m, "corral_gpus_allocated", queue="team-a", provider="aws", model="H100") == 2
    assert value(m, "corral_gpus_allocated", queue="team-b", provider="gcp", model="L4") == 0.5
    assert value(m, "corral_gpus_idle") == 6 - 2.5
    assert value(m, "corral_queue_used_gpus", queue="team-b") == 0.5
    assert value(m, "corral_queue_limit_gpus", queue="team-b") == 4
    assert dash.state(c) == "pending"
    assert value(m, "corral_pending_workloads", queue="team-b", reason="QueueLimit") == 1
    assert value(m, "corral_pending_age_max_seconds", queue="team-b", reason="QueueLimit") == 2.0
    assert value(m, "corral_workloads", queue="team-a", state=dash.state(a)) == 1
    assert value(m, "corral_workloads_submitted_total", queue="team-b") == 2
    # the scheduler's cycles, observed through the control loop's observer hook
    assert value(m, "corral_schedule_cycles_total", outcome="applied") == 2
    assert value(m, "corral_schedule_cycle_duration_seconds_count") == 2
    assert value(m, "corral_placements_total") == 2
    assert value(m, "corral_schedule_cycle_placements_sum") == 2


def test_endings_restarts_and_failures_are_counted_once(dash: Dash) -> None:
    ok = dash.submit(dash.ann, name="ok")
    flaky = dash.submit(dash.ann, name="flaky", max_restarts=1, restart_backoff=0,
                         restart_on=[{"exit_code": [1]}])
    gone = dash.submit(dash.bob, name="gone", queue="team-b")
    dash.step()
    dash.backend.finish(ok)
    dash.backend.fail(flaky)
    assert dash.client.post(f"/v1/workloads/{gone}/cancel", headers=dash.bob).status_code == 200
    dash.step(3)
    m1 = dash.scrape()
    m2 = dash.scrape()  # counters advance from the last event seen: a second scrape adds nothing
    for m in (m1, m2):
        assert value(m, "corral_workloads_finished_total", queue="team-a", state="succeeded") == 1
        assert value(m, "corral_workloads_finished_total", queue="team-b", state="cancelled") == 1
        assert value(m, "corral_restarts_total", queue="team-a") == 1
        assert value(m, "corral_worker_failures_total", queue="team-a") == 1
    assert dash.state(flaky) != "failed"  # relaunched: one restart left


@pytest.mark.slow  # 12 s per store (-n 2 whole run of 2026-12-05, load 8-32)
def test_every_failed_attempt_is_a_worker_failure(dash: Dash) -> None:
    """Four failed attempts (three restarts, then failed for good) are four failures."""
    wid = dash.submit(dash.ann, name="doomed", max_restarts=3, restart_backoff=0,
                      restart_on=[{"exit_code": [1]}])
    for _ in range(4):
        dash.step()
        dash.backend.fail(wid)
        dash.step(2)
    assert dash.state(wid) == "failed"
    m = dash.scrape()
    assert value(m, "corral_worker_failures_total", queue="team-a") == 4
    assert value(m, "corral_restarts_total", queue="team-a") == 3


_RESERVED = ("_total", "_sum", "_count", "_bucket", "_created")


def test_metric_names_follow_the_prometheus_conventions(dash: Dash) -> None:
    """What `promtool check metrics` checks of names: counters end in _total; a gauge ends in
    none of the suffixes Prometheus gives counters, histograms and summaries."""
    for name in ("runs", "waits"):  # every family present: pending ages, evictions...
        dash.submit(dash.ann, name=name, gpus=4, gpu_models=["H100"])
    dash.step(2)
    text = dash.client.get("/metrics", headers=dash.admin).text
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE "))
    assert {"corral_gpus", "corral_pending_age_sum_seconds", "corral_worker_failures_total"
            } <= set(types)
    wrong = {name: kind for name, kind in types.items()
             if (kind == "counter") != name.endswith("_total")
             or (kind in ("gauge", "untyped") and name.endswith(_RESERVED))}
    assert wrong == {}


def test_preemption_is_an_eviction_of_its_queue(dash: Dash) -> None:
    low = dash.submit(dash.ann, name="low", gpus=4, gpu_models=["H100"])
    dash.step()
    dash.backend.start(low)
    dash.step()
    dash.submit(dash.ann, name="high", gpus=4, gpu_models=["H100"], priority=10)
    dash.step(2)
    m = dash.scrape()
    assert value(m, "corral_evictions_total", queue="team-a", rule="Preempt") == 1
    assert value(m, "corral_schedule_stops_total") == 1


def test_request_latency_is_labelled_by_route_template_not_by_id(dash: Dash) -> None:
    wid = dash.submit(dash.ann)
    dash.client.get(f"/v1/workloads/{wid}", headers=dash.ann)
    dash.client.get("/v1/no/such/path", headers=dash.ann)
    m = dash.scrape()
    routes = {ls["route"] for ls, _ in m["corral_api_request_duration_seconds_count"]}
    assert "/v1/workloads/{workload_id}" in routes and "(unmatched)" in routes
    assert not any(wid in r for r in routes)
    assert value(m, "corral_api_request_duration_seconds_count", route="/v1/workloads",
                 method="POST", status="201") == 1


def test_credits_granted_held_and_spent_follow_the_ledger(dash: Dash) -> None:
    r = dash.client.post("/v1/ledger/grants", json={"queue": "team-a", "amount": "100.00"},
                         headers=dash.admin)
    assert r.status_code == 201, r.text
    wid = dash.submit(dash.ann, gpus=1, gpu_models=["H100"], max_runtime="1h")
    dash.step()
    dash.backend.start(wid)
    dash.step()
    m = dash.scrape()
    assert value(m, "corral_credits_granted_total", queue="team-a") == 100
    assert value(m, "corral_credits_held", queue="team-a") == pytest.approx(4.10)  # 1 h x 4.10
    assert value(m, "corral_credits_available", queue="team-a") == pytest.approx(95.90)
    assert value(m, "corral_credits_held", queue="team-b") == 0  # unmetered: zeros
    dash.clock.advance(1800 - 1)
    dash.backend.finish(wid)
    dash.step(2)
    m = dash.scrape()
    balance = dash.client.get("/v1/ledger/queues/team-a/balance", headers=dash.ann).json()
    assert value(m, "corral_credits_spent_total", queue="team-a") == float(balance["settled"])
    assert 2.0 <= float(balance["settled"]) <= 2.1  # about half an hour at 4.10 per GPU-hour
    assert value(m, "corral_credits_held", queue="team-a") == 0
    assert value(m, "corral_credits_available", queue="team-a") == float(balance["available"])


@pytest.mark.parametrize(("who", "status"), [("nobody", 401), ("ann", 403), ("admin", 200)])
def test_metrics_need_an_admin_token(sqlite_dash: Dash, who: str, status: int) -> None:
    headers = {"nobody": {}, "ann": sqlite_dash.ann, "admin": sqlite_dash.admin}[who]
    assert sqlite_dash.client.get("/metrics", headers=headers).status_code == status


def test_two_apps_in_one_process_keep_separate_registries(sqlite_dash: Dash, tmp_path) -> None:
    from corral.store import Store
    from corral.store.database import sqlite_url

    from .rig import build

    other_store = Store(sqlite_url(tmp_path / "other.db"))
    other_store.upgrade()
    try:
        other = build(other_store)
        sqlite_dash.submit(sqlite_dash.ann)
        sqlite_dash.step()
        assert value(sqlite_dash.scrape(), "corral_schedule_cycles_total") == 1
        assert value(other.scrape(), "corral_schedule_cycles_total") == 0
    finally:
        other_store.close()
