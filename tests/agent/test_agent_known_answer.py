"""The known-answer test on a real `corral agent` host, end to end (`corral up --backend agent`):
a GPU that computes a wrong answer is cordoned alone (the node keeps taking work on its other
GPUs), a GPU a worker holds is never tested, and a repaired GPU comes back.

No GPU is used: the host's NVML is `corral.testing.fake_pynvml` and its cupy is
`corral.testing.fake_cupy` (numpy posing as cupy; a device listed in its state file corrupts
what it returns), both put first on the agent's PYTHONPATH, so the agent's child process runs
the real known-answer code on the fake library.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from corral.testing import fake_cupy, fake_pynvml
from corral.testing.corral_up import CorralServer

from .conftest import TIMEOUT_S, make_token
from .harness import AgentProc, wait_for

pytestmark = pytest.mark.slow

LABEL = "corral.dev/cordoned-gpus"
WORKER = textwrap.dedent("""
    import json, os, pathlib, sys, time
    out = pathlib.Path(sys.argv[1])
    (out / "env.json").write_text(json.dumps({"devices": os.environ["CUDA_VISIBLE_DEVICES"]}))
    while not (out / "go").exists():
        time.sleep(0.1)
""")


class Host:
    def __init__(self, server: CorralServer, tmp: Path) -> None:
        self.server, self.tmp = server, tmp
        self.cupy_state = tmp / "cupy.json"

    def corrupt(self, *devices: int) -> None:
        tmp = self.cupy_state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"devices": 4, "corrupt": list(devices)}))
        os.replace(tmp, self.cupy_state)

    def node(self) -> dict[str, object]:
        listed = {n["id"]: n for n in self.server.cli_json("nodes")}  # type: ignore[index, union-attr]
        return listed.get("host-kat", {"labels": {}})

    def job(self, name: str, gpus: int) -> dict[str, object]:
        script = self.tmp / "worker.py"
        script.write_text(WORKER)
        out = self.tmp / name
        out.mkdir(exist_ok=True)
        return {"name": name, "queue": "default", "cpu": 0.1, "memory": 64, "gpus": gpus,
                "command": [sys.executable, str(script), str(out)]}

    def devices_of(self, name: str) -> set[int]:
        env = self.tmp / name / "env.json"
        wait_for(env.exists, f"{name}'s worker")
        return {int(d) for d in json.loads(env.read_text())["devices"].split(",")}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    tmp = tmp_path_factory.mktemp("known-answer")
    server = CorralServer(tmp / "cp").start("--backend", "agent", "--agent-timeout",
                                            str(TIMEOUT_S))
    h = Host(server, tmp)
    h.corrupt()
    nvml_state = tmp / "nvml.json"
    nvml_state.write_text(json.dumps({"gpus": [asdict(fake_pynvml.FakeGpu())] * 4}))
    shims = tmp / "shims"
    fake_pynvml.install_shim(shims, nvml_state)
    fake_cupy.install_shim(shims, h.cupy_state)
    agent = AgentProc(server.url, tmp / "host-kat", "host-kat", make_token(server, 1), gpus=4,
                      extra=["--gpu-model", "H100", "--gpu-probe-interval", "0.3",
                             "--known-answer-interval", "1"])
    old = os.environ.get("PYTHONPATH")
    try:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shims), old]))
        agent.start()  # its `import pynvml` and its test's `import cupy` find the fakes
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    try:
        wait_for(lambda: h.node().get("health") == "healthy", "host-kat joined")
        yield h
    finally:
        agent.stop()
        agent.kill_workers()
        server.stop()


def test_a_gpu_that_computes_wrong_is_cordoned_alone_and_busy_ones_are_left_alone(
        host: Host) -> None:
    with host.server.client() as c:
        first = c.submit(host.job("first", 2)).group_id
        busy = host.devices_of("first")
        idle_bad = min({0, 1, 2, 3} - busy)
        host.corrupt(idle_bad, *busy)  # the busy ones would fail too, were they tested
        node = wait_for(lambda: (n := host.node())["labels"].get(LABEL) == str(idle_bad) and n,
                        f"GPU {idle_bad} cordoned by the known-answer test")
        assert node["health"] == "healthy"
        assert f"gpu {idle_bad}: known-answer test failed (silent data corruption)" in str(
            node["health_reason"])
        assert "matmul: " in str(node["health_reason"])
        # the job on the busy GPUs runs on: they are never tested under it
        assert c.get(first).state == "running"
        assert not [e for e in c.events(first).items if e.reason == "NodeDrained"]
        second = c.submit(host.job("second", 1)).group_id
        assert host.devices_of("second") == {0, 1, 2, 3} - busy - {idle_bad}

        host.corrupt()  # repaired: the next run passes and the GPU returns
        wait_for(lambda: LABEL not in host.node()["labels"], f"GPU {idle_bad} back")
        for name in ("first", "second"):
            (host.tmp / name / "go").write_text("1")
        assert c.wait(first, timeout_s=60).state == "succeeded"
        assert c.wait(second, timeout_s=60).state == "succeeded"
