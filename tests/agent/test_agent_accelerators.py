"""Accelerators on real `corral agent` hosts, end to end (`corral up --backend agent`, two agent
processes on this machine): an AMD host's worker gets ROCm's device variables, not CUDA's; a
worker's progress file comes back through the agent and shows in `corral describe`; and a GPU
health check failing on one GPU of a host cordons that GPU and drains the work on it, with the
check's reason in `corral nodes`.

No GPU is used. The AMD host is declared (`--gpu-model MI300X`); the NVIDIA host's NVML is
`corral.testing.fake_pynvml`, a fake pynvml module put first on that agent's PYTHONPATH, whose
GPUs the test describes in a JSON file it rewrites while the agent runs (a GPU falls off the bus).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from corral.testing.corral_up import CorralServer
from corral.testing.fake_pynvml import FakeGpu, install_shim

from .conftest import TIMEOUT_S, make_token
from .harness import AgentProc, wait_for

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent("""
    import json, os, pathlib, sys, time
    out = pathlib.Path(sys.argv[1])
    names = ("CUDA_", "ROCR_", "HIP_")
    # Written whole, then renamed: the test reads it as soon as the name exists.
    (out / ".env.tmp").write_text(json.dumps(
        {k: v for k, v in os.environ.items() if k.startswith(names)}))
    os.rename(out / ".env.tmp", out / "env.json")
    path = pathlib.Path(os.environ["CORRAL_PROGRESS_FILE"])
    tmp = path.with_name(".progress.tmp")
    tmp.write_text(json.dumps({"steps": 120, "total_steps": 1000, "steps_per_s": 2.5}))
    os.rename(tmp, path)
    while not (out / "go").exists():
        time.sleep(0.1)
""")


class Hosts:
    def __init__(self, server: CorralServer, tmp: Path, nvml_state: Path) -> None:
        self.server, self.tmp, self.nvml_state = server, tmp, nvml_state
        self.agents: list[AgentProc] = []

    def set_gpus(self, *gpus: FakeGpu) -> None:
        tmp = self.nvml_state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"gpus": [asdict(g) for g in gpus]}))
        os.replace(tmp, self.nvml_state)

    def job(self, name: str, vendor: str) -> dict[str, object]:
        script = self.tmp / "worker.py"
        script.write_text(WORKER)
        out = self.tmp / name
        out.mkdir(exist_ok=True)
        return {"name": name, "queue": "default", "cpu": 0.1, "memory": 64, "gpus": 2,
                "node_selector": {"corral.dev/vendor": vendor}, "preemptible": True,
                "command": [sys.executable, str(script), str(out)]}

    def nodes(self) -> dict[str, dict[str, object]]:
        listed = self.server.cli_json("nodes")
        return {n["id"]: n for n in listed}  # type: ignore[index, union-attr]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    tmp = tmp_path_factory.mktemp("accelerators")
    server = CorralServer(tmp / "cp").start("--backend", "agent", "--agent-timeout",
                                            str(TIMEOUT_S))
    h = Hosts(server, tmp, tmp / "nvml.json")
    h.set_gpus(FakeGpu(), FakeGpu())
    token = make_token(server, 2)
    amd = AgentProc(server.url, tmp / "host-amd", "host-amd", token, gpus=2,
                    extra=["--gpu-model", "MI300X", "--gpu-probe-interval", "0"])
    nvidia = AgentProc(server.url, tmp / "host-nv", "host-nv", token, gpus=2,
                       extra=["--gpu-model", "H100", "--gpu-probe-interval", "0.3"])
    shim = install_shim(tmp / "fake-nvml", h.nvml_state).parent
    old = os.environ.get("PYTHONPATH")
    try:
        amd.start()
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), old]))
        nvidia.start()  # this agent's `import pynvml` finds the fake
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    h.agents = [amd, nvidia]
    try:
        wait_for(lambda: set(h.nodes()) == {"host-amd", "host-nv"}, "both agents joined")
        yield h
    finally:
        for a in h.agents:
            a.stop()
            a.kill_workers()
        server.stop()


def test_an_amd_hosts_worker_gets_rocm_devices_and_reports_progress(hosts: Hosts) -> None:
    with hosts.server.client() as c:
        wid = c.submit(hosts.job("on-amd", "amd")).group_id
        env_file = hosts.tmp / "on-amd" / "env.json"
        wait_for(env_file.exists, "the worker's environment")
        env = json.loads(env_file.read_text())
        assert env == {"ROCR_VISIBLE_DEVICES": "0,1", "HIP_VISIBLE_DEVICES": "0,1"}

        def progress() -> list[str]:
            return [e.message for e in c.events(wid).items if e.reason == "Progress"]
        [said] = wait_for(progress, "the worker's progress in its events")
        assert said == "worker 0: step 120 of 1000 (12.0%), 2.5 steps/s on MI300X"
        (hosts.tmp / "on-amd" / "go").write_text("1")
        assert c.wait(wid, timeout_s=60).state == "succeeded"
    described = hosts.server.cli("describe", wid).stdout
    assert "step 120 of 1000" in described


def test_a_gpu_that_falls_off_the_bus_is_cordoned_alone_and_its_work_drained(hosts: Hosts) -> None:
    with hosts.server.client() as c:
        wid = c.submit(hosts.job("on-nv", "nvidia")).group_id
        wait_for((hosts.tmp / "on-nv" / "env.json").exists, "the worker on host-nv")
        env = json.loads((hosts.tmp / "on-nv" / "env.json").read_text())
        assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and "ROCR_VISIBLE_DEVICES" not in env
        assert hosts.nodes()["host-nv"]["health"] == "healthy"

        hosts.set_gpus(FakeGpu(), FakeGpu(lost=True))
        # GPU 1 alone is cordoned: the node stays healthy with GPU 0 in service
        node = wait_for(lambda: (n := hosts.nodes()["host-nv"])["labels"].get(
            "corral.dev/cordoned-gpus") == "1" and n, "host-nv's GPU 1 cordoned by its check")
        assert node["health"] == "healthy"
        assert "gpu 1: GPU has fallen off the bus" in str(node["health_reason"])
        drained = wait_for(lambda: [e for e in c.events(wid).items
                                    if e.reason == "NodeDrained"], "the job drained")
        assert "gpu 1 of node host-nv is unhealthy" in drained[0].message
        # the drain is the preemption contract: the job stops, then waits (it needs 2 GPUs)
        wait_for(lambda: c.get(wid).state == "pending", "the drained job back in its queue")
        listed = hosts.server.cli("nodes").stdout
        assert "fallen off the bus" in listed and "gpu 1 cordoned" in listed

        hosts.set_gpus(FakeGpu(), FakeGpu())  # repaired: the GPU takes work again
        wait_for(lambda: "corral.dev/cordoned-gpus" not in hosts.nodes()["host-nv"]["labels"],
                 "host-nv's GPU 1 back")
        (hosts.tmp / "on-nv" / "go").write_text("1")
        assert c.wait(wid, timeout_s=60).state == "succeeded"


def test_measured_gpu_use_shows_beside_what_holds_the_gpu(hosts: Hosts) -> None:
    """A job holds both GPUs of host-nv and keeps one 3% busy: the node view and /metrics say
    so per device, with the job's id on each (held but idle), from the agent's NVML samples."""
    hosts.set_gpus(FakeGpu(utilization_pct=3, memory_used_mib=512),
                   FakeGpu(utilization_pct=95, memory_used_mib=70000))
    with hosts.server.client() as c:
        wid = c.submit(hosts.job("use-nv", "nvidia")).group_id
        try:
            wait_for((hosts.tmp / "use-nv" / "env.json").exists, "the worker on host-nv")

            # A sample is taken every 0.3 s and sent with the next sync, while the job is held
            # from the moment it is placed: the first view that names the job may still carry
            # the sample taken before set_gpus (0% on both GPUs). Wait for one taken after it
            # (GPU 1 at 95%), then look at GPU 0. Not waiting for it read 0.0 for 0.03 once in
            # the fresh-clone run of 8022983 (closing26; blamed on 71a93ef, not the cause).
            def devices() -> list[dict[str, object]]:
                listed = hosts.nodes()["host-nv"]["devices"]
                assert isinstance(listed, list)
                taken_after = len(listed) == 2 and listed[1]["utilization"] == 0.95
                # ... and taken after the hold began (the job's workers first seen running): a
                # sample from between placement and running names the job beside it but judges
                # it not (before_hold), and /metrics names no holder on it (the clean-clone run
                # of d236574 read workload "" on /metrics after a view that named the job).
                judged = bool(listed and listed[0]["workloads"]) and not listed[0]["before_hold"]
                return listed if taken_after and judged else []
            first, second = wait_for(devices, "host-nv's measured use, held by the job")
            assert (first["device"], first["utilization"], first["workloads"]) == (0, 0.03, [wid])
            assert first["memory_used_bytes"] == 512 * 2**20
            assert first["memory_total_bytes"] == FakeGpu().memory_mib * 2**20
            assert (second["utilization"], second["workloads"]) == (0.95, [wid])
            assert 0 <= float(first["age_s"]) < TIMEOUT_S  # type: ignore[arg-type]
            assert hosts.nodes()["host-amd"]["devices"] == []  # no probe there: no samples

            labels = {"node": "host-nv", "device": "0", "workload": wid}

            # /metrics draws the holders from the dashboard's pool reading, cached for a moment:
            # the hold's start may reach it a scrape after /v1/nodes saw it.
            def scrape() -> dict[tuple[str, str], tuple[dict[str, str], float]]:
                scraped = httpx.get(f"{hosts.server.url}/metrics", headers={
                    "Authorization": f"Bearer {hosts.server.token}"}).text
                gauges = {(s.name, s.labels["device"]): (s.labels, s.value)
                          for f in text_string_to_metric_families(scraped) for s in f.samples
                          if s.name.startswith("corral_gpu_")
                          and s.labels.get("node") == "host-nv"}
                named = gauges.get(("corral_gpu_utilization_ratio", "0"), ({}, 0.0))[0]
                return gauges if named.get("workload") == wid else {}
            gauges = wait_for(scrape, "/metrics naming the job on host-nv's GPU 0")
            assert gauges["corral_gpu_utilization_ratio", "0"] == (labels, 0.03)
            assert gauges["corral_gpu_memory_used_bytes", "0"] == (labels, 512 * 2**20)
            assert gauges["corral_gpu_utilization_ratio", "1"][1] == 0.95
        finally:
            c.cancel(wid)
            hosts.set_gpus(FakeGpu(), FakeGpu())
            (hosts.tmp / "use-nv" / "go").write_text("1")
