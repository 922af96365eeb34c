"""Measured GPU use (`corral.control.device_use`) beside allocation: the API's node view per
device with the sample's age and the workload holding the device, and the Prometheus gauges
`corral_gpu_utilization_ratio` / `corral_gpu_memory_used_bytes` labelled node, device,
workload. The samples come as an agent's heartbeat or the local probe put them on the board;
the agent's side is tests/agent/test_gpu_use.py, a real agent end to end
tests/agent/test_agent_accelerators.py."""

from __future__ import annotations

import sys

import pytest

from corral.control.device_use import UseCutoffs, UseSample, board_for
from corral.web.metrics import USE_STALE_S

from .rig import Dash, value

GIB = 2**30


def _sample(device: int, busy: float, used_gib: int, at: float) -> UseSample:
    return UseSample(device, busy, used_gib * GIB, 80 * GIB, at)


def test_held_but_idle_gpus_show_per_device_with_their_holder(dash: Dash) -> None:
    wid = dash.submit(dash.ann, name="idle-holder", gpus=2, gpu_models=["H100"])
    dash.step(2)
    dash.clock.advance(10.0)  # the samples below are taken after the hold began (judges)
    node = next(n for n in dash.client.get("/v1/nodes", headers=dash.admin).json()
                if n["workloads"])
    with dash.store.read() as conn:
        from corral.store import workloads as W
        [held] = W.holding_placements(conn)
    now = dash.clock.now()
    board_for(dash.store).record(held.node_id, [
        _sample(d, 0.03, 1, now - 4.0) for d in held.devices] + [
        _sample(3, 0.9, 70, now - 1.0)])
    listed = {n["id"]: n for n in dash.client.get("/v1/nodes", headers=dash.admin).json()}
    devices = listed[node["id"]]["devices"]
    by_device = {d["device"]: d for d in devices}
    for d in held.devices:
        assert by_device[d] == {"device": d, "utilization": 0.03, "memory_used_bytes": GIB,
                                "memory_total_bytes": 80 * GIB, "age_s": 4.0,
                                "workloads": [wid], "idle_held": True, "before_hold": False,
                                "idle_below": 0.1, "stale_after_s": 300.0}
    assert by_device[3]["workloads"] == [] and by_device[3]["utilization"] == 0.9
    assert not by_device[3]["idle_held"]  # busy and free: nothing to say
    assert listed["gcp-0"]["devices"] == []  # no sample came: nothing said, not zero
    # ann's queue holds the GPUs: she sees her work on them and the flag, as the admin does
    ann = {n["id"]: n for n in dash.client.get("/v1/nodes", headers=dash.ann).json()}
    assert by_device == {d["device"]: d for d in ann[node["id"]]["devices"]}
    # bob (team-b) sees the use but neither who holds the GPUs nor a verdict on their work
    bob = {n["id"]: n for n in dash.client.get("/v1/nodes", headers=dash.bob).json()}
    seen = bob[node["id"]]["devices"]
    assert [(d["workloads"], d["idle_held"]) for d in seen] == [([], False)] * 3
    assert [d["utilization"] for d in seen] == [0.03, 0.03, 0.9]
    assert wid not in str(bob)

    m = dash.scrape()
    for d in held.devices:
        assert value(m, "corral_gpu_utilization_ratio", node=held.node_id, device=str(d),
                     workload=wid) == 0.03
        assert value(m, "corral_gpu_memory_used_bytes", node=held.node_id, device=str(d),
                     workload=wid) == GIB
    assert value(m, "corral_gpu_utilization_ratio", node=held.node_id, device="3",
                 workload="") == 0.9
    assert value(m, "corral_gpu_memory_total_bytes", device="3") == 80 * GIB


def test_a_sample_taken_before_the_hold_began_judges_no_holder(dash: Dash) -> None:
    """Issue 17: work holds its GPUs from placement, an agent sends the sample it took up to
    one interval before. A sample taken before the hold began (the attempt's start) says
    nothing of the new holder: no 'held, barely used' in the API, the Pool page or `corral
    nodes`, and no holder named on the gauge series; the next sample judges it."""
    from corral.cli.render import idle_held
    from corral.sdk import models as M
    from corral.store import workloads as W

    wid = dash.submit(dash.ann, name="new-holder", gpus=1, gpu_models=["H100"])
    dash.step(2)
    with dash.store.read() as conn:
        [held] = W.holding_placements(conn)
    assert held.began is not None and held.began <= dash.clock.now()
    [d] = held.devices
    board = board_for(dash.store)
    board.record(held.node_id, [_sample(d, 0.01, 0, held.began - 0.5)])  # the empty GPU's

    def device(who: dict[str, str]) -> dict[str, object]:
        [node] = [n for n in dash.client.get("/v1/nodes", headers=who).json()
                  if n["id"] == held.node_id]
        [dev] = [x for x in node["devices"] if x["device"] == d]
        return dict(dev)

    for who in (dash.admin, dash.ann):
        dev = device(who)
        assert (dev["workloads"], dev["idle_held"], dev["before_hold"]) == ([wid], False, True)
        assert not idle_held(M.DeviceUseInfo.model_validate(dev))  # nor in `corral nodes`
    assert device(dash.bob)["before_hold"] is False  # another tenant's hold is not told
    page = dash.client.get("/v1/dashboard/pool/page", headers=dash.ann).json()
    [cell] = [c for n in page["nodes"] if n["id"] == held.node_id for c in n["devices"]
              if c["index"] == d]
    assert (cell["idle_held"], cell["before_hold"]) == (False, True)
    m = dash.scrape()
    assert value(m, "corral_gpu_utilization_ratio", node=held.node_id, device=str(d),
                 workload="") == 0.01
    assert wid not in str(m["corral_gpu_utilization_ratio"])

    board.record(held.node_id, [_sample(d, 0.02, 1, held.began)])  # taken as the hold began
    dev = device(dash.ann)
    assert (dev["idle_held"], dev["before_hold"]) == (True, False)
    assert idle_held(M.DeviceUseInfo.model_validate(dev))
    page = dash.client.get("/v1/dashboard/pool/page", headers=dash.ann).json()
    [cell] = [c for n in page["nodes"] if n["id"] == held.node_id for c in n["devices"]
              if c["index"] == d]
    assert (cell["idle_held"], cell["before_hold"]) == (True, False)
    assert value(dash.scrape(), "corral_gpu_utilization_ratio", node=held.node_id,
                 device=str(d), workload=wid) == 0.02


def test_a_newer_sample_replaces_an_older_and_a_stale_one_leaves_the_gauges(dash: Dash) -> None:
    board = board_for(dash.store)
    now = dash.clock.now()
    board.record("aws-0", [_sample(0, 0.5, 1, now)])
    board.record("aws-0", [_sample(0, 0.1, 1, now - 10.0)])  # late arrival of an older sample
    assert board.of("aws-0")[0].utilization == 0.5
    board.record("gone-node", [_sample(0, 0.5, 1, now)])  # not in the pool: not exported
    m = dash.scrape()
    assert value(m, "corral_gpu_utilization_ratio", node="aws-0", device="0") == 0.5
    assert "gone-node" not in str(m.get("corral_gpu_utilization_ratio"))
    dash.clock.advance(USE_STALE_S + 30.0)
    dash.step()
    m = dash.scrape()
    assert m.get("corral_gpu_utilization_ratio", []) == []
    node = next(n for n in dash.client.get("/v1/nodes", headers=dash.admin).json()
                if n["id"] == "aws-0")
    assert node["devices"][0]["age_s"] >= USE_STALE_S  # the API still says it, with its age


def test_two_control_planes_in_one_process_keep_their_own_samples(dash: Dash) -> None:
    from corral.store import Store
    other = Store("sqlite://")
    board_for(dash.store).record("aws-0", [_sample(0, 0.5, 1, 0.0)])
    assert board_for(other).of("aws-0") == {}


def test_the_pool_page_shows_measured_use_beside_allocation(dash: Dash) -> None:
    wid = dash.submit(dash.ann, name="held", gpus=1, gpu_models=["H100"])
    dash.step(2)
    dash.clock.advance(10.0)  # the samples below are taken after the hold began (judges)
    now = dash.clock.now()
    board_for(dash.store).record("aws-0", [_sample(d, 0.02 if d == 0 else 0.8, 2, now - 3.0)
                                           for d in range(3)])
    page = dash.client.get("/v1/dashboard/pool/page", headers=dash.ann).json()
    [row] = [n for n in page["nodes"] if n["id"] == "aws-0"]
    cells = {c["index"]: c for c in row["devices"]}
    held = next(c for c in cells.values() if c["shares"])
    assert held["shares"][0]["workload_id"] == wid
    assert (cells[0]["utilization"], cells[0]["memory_used_bytes"], cells[0]["use_age_s"]) == (
        0.02, 2 * GIB, 3.0)
    assert cells[1]["utilization"] == 0.8
    assert cells[3]["utilization"] is None  # no sample for GPU 3: not measured, not zero
    [gcp] = [n for n in page["nodes"] if n["id"] == "gcp-0"]
    assert all(c["utilization"] is None for c in gcp["devices"])
    # the held cell is flagged for ann (her queue's work), never for bob (another tenant's)
    assert [c["idle_held"] for c in cells.values()] == [c is held for c in cells.values()]
    assert (page["idle_below"], page["stale_after_s"]) == (0.1, 300.0)
    bobs = dash.client.get("/v1/dashboard/pool/page", headers=dash.bob).json()
    [row] = [n for n in bobs["nodes"] if n["id"] == "aws-0"]
    assert [c["idle_held"] for c in row["devices"]] == [False] * 4
    assert [c["utilization"] for c in row["devices"]] == [0.02, 0.8, 0.8, None]


def test_the_cut_offs_are_the_servers_and_checked(dash: Dash) -> None:
    """`corral up --gpu-idle-below 0.5 --gpu-use-stale 60` (the board's cut-offs): a held GPU
    at 30% is barely used, a 61 s old sample says nothing now; both in the API's answer."""
    dash.submit(dash.ann, name="held", gpus=1, gpu_models=["H100"])
    dash.step(2)
    dash.clock.advance(10.0)  # the samples below are taken after the hold began (judges)
    board = board_for(dash.store)
    board.cutoffs = UseCutoffs(idle_below=0.5, stale_s=60.0)
    with dash.store.read() as conn:
        from corral.store import workloads as W
        [held] = W.holding_placements(conn)
    [d] = held.devices
    now = dash.clock.now()
    board.record("aws-0", [_sample(d, 0.3, 1, now - 2.0)])
    [node] = [n for n in dash.client.get("/v1/nodes", headers=dash.ann).json()
              if n["id"] == "aws-0"]
    [dev] = node["devices"]
    assert (dev["idle_held"], dev["idle_below"], dev["stale_after_s"]) == (True, 0.5, 60.0)
    page = dash.client.get("/v1/dashboard/pool/page", headers=dash.ann).json()
    assert (page["idle_below"], page["stale_after_s"]) == (0.5, 60.0)
    dash.clock.advance(60.0)  # the sample is now 62 s old: stale
    [node] = [n for n in dash.client.get("/v1/nodes", headers=dash.ann).json()
              if n["id"] == "aws-0"]
    assert not node["devices"][0]["idle_held"]
    m = dash.scrape()
    assert m.get("corral_gpu_utilization_ratio", []) == []  # /metrics judges by the same


@pytest.mark.parametrize(("idle", "stale", "field"), [
    (0.0, 300.0, "--gpu-idle-below"), (1.5, 300.0, "--gpu-idle-below"),
    (0.1, 0.5, "--gpu-use-stale"), (0.1, 90_000.0, "--gpu-use-stale")])
def test_cut_offs_out_of_bounds_are_refused_naming_the_flag(
        idle: float, stale: float, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        UseCutoffs(idle_below=idle, stale_s=stale)


def test_corral_ups_own_host_is_sampled_with_its_health_probe(
        dash: Dash, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local backend's host: `corral up` checks its GPUs through NVML (here the fake
    pynvml) and each check also records their measured use for the node."""
    from corral.cli.server import _gpu_health
    from corral.core.model import Node
    from corral.testing.fake_pynvml import FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(utilization_pct=7, memory_used_mib=100), FakeGpu(lost=True)])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    node = Node("local", "local", "H100", 2, 81559, 8000, 65536)
    monitor, probe = _gpu_health(dash.store, [node], 10.0)
    try:
        assert monitor.gpu_verdicts is not None
        monitor.gpu_verdicts(50.0)
    finally:
        probe.close()
    assert board_for(dash.store).of("local") == {
        0: UseSample(0, 0.07, 100 * 2**20, 81559 * 2**20, 50.0)}  # the lost GPU: no sample
