"""The dashboard's data endpoints and files: what each role sees, and what nobody sees."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest

from corral.web.reports import list_reports
from corral.web.settings import WebSettings

from .rig import Dash

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # see rig.py: Starlette's TestClient deprecation
    from fastapi.testclient import TestClient

ENDPOINTS = ["/v1/dashboard/me", "/v1/dashboard/pool", "/v1/dashboard/queues",
             "/v1/dashboard/usage", "/v1/dashboard/reports", "/v1/dashboard/pool/page"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_view_needs_a_token(sqlite_dash: Dash, path: str) -> None:
    r = sqlite_dash.client.get(path)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_a_user_sees_their_queues_and_only_the_occupancy_of_others(dash: Dash) -> None:
    mine = dash.submit(dash.ann, name="mine", gpus=0.5, gpu_models=["L4"])
    theirs = dash.submit(dash.bob, name="theirs", queue="team-b", gpus=0.5, gpu_models=["L4"])
    dash.step()
    me = dash.client.get("/v1/dashboard/me", headers=dash.ann).json()
    assert me == {"name": "ann", "role": "user", "queues": ["team-a"]}
    pool = dash.client.get("/v1/dashboard/pool", headers=dash.ann)
    shares = [s for n in pool.json()["nodes"] for d in n["devices"] for s in d["shares"]]
    assert sorted((s["queue"] or "", s["gpus"]) for s in shares) == [("", 0.5), ("team-a", 0.5)]
    assert {s["workload_id"] for s in shares} == {mine, None}
    assert pool.json()["totals"]["allocated"] == 1.0 and pool.json()["running"] == 1
    queues = dash.client.get("/v1/dashboard/queues", headers=dash.ann).json()
    assert [q["name"] for q in queues["queues"]] == ["team-a"]
    usage = dash.client.get("/v1/dashboard/usage", headers=dash.ann).json()
    assert usage["points"][-1]["by_queue"] == {"team-a": 0.5, "": 0.5}
    for path in ENDPOINTS[:4]:
        body = dash.client.get(path, headers=dash.ann).text
        assert "team-b" not in body and theirs not in body and "bob" not in body, path
    admin = dash.client.get("/v1/dashboard/pool", headers=dash.admin).json()
    assert {s["queue"] for n in admin["nodes"] for d in n["devices"] for s in d["shares"]} == {
        "team-a", "team-b"}


def test_the_pool_summary_is_the_pool_without_its_nodes(dash: Dash) -> None:
    dash.submit(dash.ann, name="mine", gpus=0.5, gpu_models=["L4"])
    dash.submit(dash.bob, name="theirs", queue="team-b", gpus=0.5, gpu_models=["L4"])
    dash.submit(dash.bob, name="waits", queue="team-b", gpus=4)  # over its limit: waits
    dash.step()
    for who, counts in ((dash.ann, (0, 1)), (dash.admin, (1, 2))):
        pool = dash.client.get("/v1/dashboard/pool", headers=who).json()
        summary = dash.client.get("/v1/dashboard/pool/summary", headers=who).json()
        assert summary == {"totals": pool["totals"], "nodes": len(pool["nodes"]),
                           "pending": pool["pending"], "running": pool["running"]}
        assert (summary["pending"], summary["running"]) == counts


def test_the_pool_pages_are_the_pool_view_page_by_page(dash: Dash) -> None:
    """Issue 16: /v1/dashboard/pool/page gives the pool view's node rows, filtered and paged on
    the server, with each provider's sums over every matching node."""
    dash.submit(dash.ann, name="mine", gpus=0.5, gpu_models=["L4"])
    dash.submit(dash.bob, name="theirs", queue="team-b", gpus=0.5, gpu_models=["L4"])
    dash.step()
    for who in (dash.ann, dash.admin):
        pool = dash.client.get("/v1/dashboard/pool", headers=who).json()
        rows = {n["id"]: n for n in pool["nodes"]}
        seen, offset = [], 0
        while True:
            page = dash.client.get(f"/v1/dashboard/pool/page?limit=1&offset={offset}",
                                   headers=who).json()
            assert page["matching"] == len(rows) and len(page["nodes"]) <= 1
            if not page["nodes"]:
                break
            seen += page["nodes"]
            offset += 1
        assert sorted(seen, key=lambda n: n["id"]) == sorted(rows.values(), key=lambda n: n["id"])
        assert {g["provider"]: (g["nodes"], g["gpus"], g["gpus_used"]) for g in page["groups"]} == {
            p: (len(ns), sum(n["gpu_count"] for n in ns), sum(n["gpus_used"] for n in ns))
            for p in {n["provider"] for n in rows.values()}
            for ns in [[n for n in rows.values() if n["provider"] == p]]}
        assert page["totals"] == pool["totals"]
        model = "L4"
        only = dash.client.get(f"/v1/dashboard/pool/page?gpu_model={model}&limit=500",
                               headers=who).json()
        assert sorted(n["id"] for n in only["nodes"]) == sorted(
            i for i, n in rows.items() if n["gpu_model"] == model)
        assert model in only["facets"]["gpu_model"] and len(only["facets"]["gpu_model"]) > 1
    bad = dash.client.get("/v1/dashboard/pool/page?limit=0", headers=dash.ann)
    assert bad.status_code == 422 and "limit" in bad.text


def test_the_demand_is_what_the_core_sees(sqlite_dash: Dash) -> None:
    """The reader sums demand from its rows; the core's snapshot of the same state agrees."""
    d = sqlite_dash
    d.submit(d.ann, name="half", gpus=0.5, gpu_models=["L4"])
    d.submit(d.ann, name="gang", gpus=2, workers=2)
    d.submit(d.bob, name="b1", queue="team-b", gpus=2)
    d.submit(d.bob, name="b2", queue="team-b", gpus=4)  # over the limit: pending
    d.step(2)
    reader = d.app.state.corral_web.reader
    state = reader.read()
    core: dict[str, int] = {}
    for w in reader._live.snapshot(state.at).state.workloads:
        core[w.queue] = core.get(w.queue, 0) + w.total_milli()
    assert state.demand_milli == core and set(core) == {"team-a", "team-b"}


def test_a_reading_of_an_unchanged_pool_reuses_the_last_and_a_change_is_seen(
        sqlite_dash: Dash, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the cache's time a reading of an unchanged pool costs the feed's heads only; a new
    workload, or a backoff that ran out, is in the next reading all the same."""
    d = sqlite_dash
    d.submit(d.ann, name="half", gpus=0.5, gpu_models=["L4"])
    d.step()
    reader = d.app.state.corral_web.reader
    derived: list[float] = []
    real = reader._derive
    monkeypatch.setattr(reader, "_derive", lambda live, now: derived.append(now) or real(live, now))
    reader._cached = None
    first = reader.read()
    d.clock.advance(5.0)
    reader._cached = None
    again = reader.read()
    assert len(derived) == 1 and again.at == first.at + 5.0  # reused, dated now
    assert (again.demand_milli, again.counts) == (first.demand_milli, first.counts)
    d.submit(d.bob, name="b1", queue="team-b", gpus=4)
    reader._cached = None
    seen = reader.read()
    assert len(derived) == 2 and seen.counts["team-b"] == (1, 0)
    live = reader._live
    wid = next(r.id for r in live.records.values() if r.queue == "team-b")
    live.records[wid] = dataclasses.replace(live.records[wid], not_before=seen.at + 10.0)
    reader._derived = None  # as if read while it backed off: out of the demand until then
    reader._cached = None
    backing_off = reader.read()
    assert "team-b" not in backing_off.demand_milli
    d.clock.advance(11.0)
    reader._cached = None
    assert reader.read().demand_milli["team-b"] == 4000 and len(derived) == 4


def test_the_queue_board_shows_fair_share_and_reasons(sqlite_dash: Dash) -> None:
    d = sqlite_dash
    d.submit(d.bob, name="b1", queue="team-b", gpus=2, gpu_models=["L4"])
    d.submit(d.bob, name="b2", queue="team-b", gpus=4)
    d.step()
    rows = {q["name"]: q for q in d.client.get("/v1/dashboard/queues", headers=d.admin).json()["queues"]}
    assert rows["team-b"]["used_gpus"] == 2 and rows["team-b"]["pending"] == 1
    assert rows["team-b"]["pending_reasons"] == {"QueueLimit": 1}
    assert rows["team-b"]["fair_share_gpus"] == 4  # demand 6, capped by its limit of 4
    assert rows["team-a"]["fair_share_gpus"] == 0


def test_reports_are_for_admins_and_stay_inside_their_directory(sqlite_dash: Dash,
                                                               tmp_path: Path) -> None:
    d = sqlite_dash
    root = tmp_path / "sim"
    root.mkdir()
    (root / "util.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (root / "report.json").write_text(json.dumps({"jct_p50_s": 12.5}))
    (tmp_path / "private.json").write_text('{"secret": 1}')
    d.app.state.corral_web.settings = WebSettings(sim_reports_dir=root)
    assert d.client.get("/v1/dashboard/reports", headers=d.ann).status_code == 403
    listed = d.client.get("/v1/dashboard/reports", headers=d.admin).json()
    assert sorted(r["name"] for r in listed) == ["report.json", "util.png"]
    png = d.client.get("/v1/dashboard/reports/util.png", headers=d.admin)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert d.client.get("/v1/dashboard/reports/report.json", headers=d.admin).json() == {
        "jct_p50_s": 12.5}
    for bad in ["../private.json", "..%2Fprivate.json", "missing.png"]:
        r = d.client.get(f"/v1/dashboard/reports/{bad}", headers=d.admin)
        assert r.status_code == 404 and "secret" not in r.text, bad
    assert list_reports(root)  # the directory itself was untouched


def test_the_dashboard_is_served_with_a_strict_content_security_policy(sqlite_dash: Dash) -> None:
    c = sqlite_dash.client
    root = c.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "ui/"
    page = c.get("/ui/")
    assert page.status_code == 200 and '<script type="module" src="js/main.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    js = c.get("/ui/js/main.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


def test_the_sampler_runs_while_the_server_serves(sqlite_dash: Dash) -> None:
    web = sqlite_dash.app.state.corral_web
    with TestClient(sqlite_dash.app):  # runs the lifespan: starts, then stops, the sampler
        assert web.sampler._thread is not None
        sqlite_dash.submit(sqlite_dash.ann)  # a request while it runs
    assert web.sampler._thread is None
    assert len(web.history.since(0.0, 100)) >= 1


@pytest.mark.parametrize(("env", "expected"), [
    ({}, (None, 10.0)),
    ({"CORRAL_SIM_REPORTS": "/r", "CORRAL_USAGE_SAMPLE_S": "2"}, (Path("/r"), 2.0)),
    ({"CORRAL_USAGE_SAMPLE_S": "soon"}, (None, 10.0)),
    ({"CORRAL_USAGE_SAMPLE_S": "-1"}, (None, 10.0)),
], ids=["defaults", "configured", "not-a-number-falls-back", "negative-falls-back"])
def test_settings_from_the_environment(env: dict[str, str], expected: tuple[object, float],
                                       caplog: pytest.LogCaptureFixture) -> None:
    s = WebSettings.from_env(env)
    assert (s.sim_reports_dir, s.usage_interval_s) == expected
    if "CORRAL_USAGE_SAMPLE_S" in env and expected[1] == 10.0:
        assert "CORRAL_USAGE_SAMPLE_S" in caplog.text
