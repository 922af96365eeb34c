"""Measured GPU use in `corral nodes` (issue 14), beside allocation, at 80 columns: a real
`corral up` whose own host is the local backend's node, its NVML the fake pynvml
(`corral.testing.fake_pynvml`, first on the server's PYTHONPATH: two GPUs at 4% and 8% busy,
probed every 0.5 s), as tests/web/test_browser_gpu_use.py runs it. A job holds one GPU, so that
GPU is "held, barely used" (the dashboard's words); USE is the mean of the node's GPUs, "-" when
no recent sample; -o wide adds a row per GPU; -o json is the API's node."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from corral.cli.output import plain
from corral.cli.render import IDLE_HELD, USE_STALE_S, nodes_table, use_text
from corral.sdk import models as M
from corral.testing.corral_up import CorralServer, up_on_fake_gpus
from corral.testing.fake_pynvml import FakeGpu

PY = sys.executable
GIB = 2**30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    gpus = [FakeGpu(utilization_pct=pct, memory_used_mib=300) for pct in (4, 8)]
    with up_on_fake_gpus(tmp_path_factory.mktemp("nodes-use"), gpus) as s:
        yield s


@pytest.fixture(scope="module")
def held(server: CorralServer) -> Iterator[str]:
    """One job holding one of the two GPUs, running; cancelled afterwards even on failure."""
    with server.client() as c:
        wid = c.submit({"name": "holds-idle", "queue": "default", "gpus": 1, "cpu": 0.1,
                        "memory": 64, "command": [PY, "-c", "import time; time.sleep(600)"]}
                       ).workloads[0].id
        try:
            c.wait(wid, states={"running"}, timeout_s=60)
            deadline = time.monotonic() + 30  # until both GPUs' samples name what holds them
            while time.monotonic() < deadline:
                [node] = c.nodes()
                if len(node.devices) == 2 and any(d.workloads for d in node.devices):
                    break
                time.sleep(0.2)
            yield wid
        finally:
            c.cancel(wid)


def _cli(server: CorralServer, *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([PY, "-m", "corral.cli.main", *args],
                       env={**server.env(), "COLUMNS": "80"}, capture_output=True, text=True,
                       timeout=60, cwd=server.data_dir)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_nodes_show_measured_use_beside_allocation_at_80_columns(
        server: CorralServer, held: str) -> None:
    r = _cli(server, "nodes")
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, r.stdout
    assert "USE" in r.stdout and "1/2" in r.stdout  # allocation, and measured use beside it
    flat = " ".join(" ".join(line.replace("│", " ").split()) for line in lines)
    assert "6%," in flat, r.stdout  # the mean of 4% and 8%
    row = _cli(server, "nodes", "-o", "plain").stdout.splitlines()[1]
    assert "6%, 1 held, barely used" in row  # the dashboard's words, whole in plain


def test_nodes_wide_has_a_row_per_gpu_and_json_is_the_api(server: CorralServer,
                                                           held: str) -> None:
    r = _cli(server, "nodes", "-o", "wide")
    assert "gpus (measured)" in r.stdout and max(map(len, r.stdout.splitlines())) <= 80
    gpus = r.stdout[r.stdout.index("gpus (measured)"):]
    assert "4%" in gpus and "8%" in gpus and held in gpus.replace("\n", "")
    assert "0.3/" in gpus  # 300 MiB used, in GiB
    [node] = json.loads(_cli(server, "nodes", "-o", "json").stdout)
    assert sorted(d["utilization"] for d in node["devices"]) == [0.04, 0.08]
    assert sorted(len(d["workloads"]) for d in node["devices"]) == [0, 1]
    assert all(d["memory_used_bytes"] == 300 * 2**20 for d in node["devices"])


def test_top_shows_the_same_use(server: CorralServer, held: str) -> None:
    r = _cli(server, "top", "--once")
    assert "USE" in r.stdout and max(map(len, r.stdout.splitlines())) <= 80, r.stdout
    flat = " ".join(" ".join(line.replace("│", " ").split()) for line in r.stdout.splitlines())
    assert "6%," in flat and "barely" in flat, r.stdout


def _node(*devices: M.DeviceUseInfo, workloads: list[str] | None = None) -> M.NodeInfo:
    return M.NodeInfo(id="n1", provider="aws", gpu_model="H100", gpu_count=2,
                      gpu_memory_mib=81920, cpu_milli=8000, memory_mib=65536,
                      price_per_gpu_hour=2.0, capacity_kind="on-demand", region="r", zone="z",
                      cordoned=False, health="healthy", gpus_used=1.0,
                      workloads=workloads or [], devices=list(devices))


def _use(device: int, busy: float, age: float, holders: list[str]) -> M.DeviceUseInfo:
    return M.DeviceUseInfo(device=device, utilization=busy, memory_used_bytes=GIB,
                           memory_total_bytes=80 * GIB, age_s=age, workloads=holders)


def test_use_is_a_dash_without_a_recent_sample_and_idle_held_needs_a_holder() -> None:
    assert use_text(_node()) == "-"  # no sample: not measured, not 0%
    assert use_text(_node(_use(0, 0.5, USE_STALE_S + 1, ["w"]))) == "-"  # stale
    # a stale GPU is left out of the mean, a fresh one counts
    assert use_text(_node(_use(0, 0.02, USE_STALE_S + 1, ["w"]), _use(1, 0.5, 2, []))) == "50%"
    assert use_text(_node(_use(0, 0.05, 2, []), _use(1, 0.95, 2, []))) == "50%"  # free: no call
    assert use_text(_node(_use(0, 0.05, 2, ["w"]), _use(1, 0.95, 2, ["v"]))) == \
        "50%, 1 held, barely used"
    assert use_text(_node(_use(0, 0.10, 2, ["w"]))) == "10%"  # 10% busy is not under 10%
    assert "USE" in plain(nodes_table([_node()]))


def test_the_cli_and_metrics_call_the_same_samples_stale() -> None:
    from corral.control.device_use import UseCutoffs
    from corral.web.metrics import USE_STALE_S as METRICS_STALE_S
    assert USE_STALE_S == METRICS_STALE_S == UseCutoffs().stale_s  # the defaults agree
    fields = M.DeviceUseInfo.model_fields
    assert (fields["stale_after_s"].default, fields["idle_below"].default) == (
        USE_STALE_S, IDLE_HELD) == (UseCutoffs().stale_s, UseCutoffs().idle_below)


def test_the_cli_judges_by_the_servers_cut_offs() -> None:
    """A server started with --gpu-idle-below 0.5 --gpu-use-stale 60 says so on each device
    (the fields set here as its API sends them; that the flags reach the server is
    tests/cli/test_up_gpu_use_cutoffs.py): 30% busy is barely used there, a 61 s old sample is
    stale."""
    def use(busy: float, age: float) -> M.DeviceUseInfo:
        return _use(0, busy, age, ["w"]).model_copy(update={"idle_below": 0.5,
                                                            "stale_after_s": 60.0})
    assert use_text(_node(use(0.3, 2))) == "30%, 1 held, barely used"
    assert use_text(_node(use(0.3, 61))) == "-"
    assert use_text(_node(_use(0, 0.3, 61, ["w"]))) == "30%"  # the default cut-offs


def test_a_sample_taken_before_the_hold_began_is_no_verdict() -> None:
    """Issue 17: the server says a sample predates a hold (`before_hold`); the CLI, which
    recomputes the flag, calls nothing "held, barely used" on it and says why in -o wide."""
    from corral.cli.render import devices_table
    before = _use(0, 0.01, 2, ["w"]).model_copy(update={"before_hold": True})
    assert use_text(_node(before)) == "1%"
    wide = " ".join(plain(devices_table([_node(before)])).split())
    assert "no sample since this hold began" in wide and "barely" not in wide
    assert use_text(_node(_use(0, 0.01, 2, ["w"]))) == "1%, 1 held, barely used"
