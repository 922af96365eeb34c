"""The agent's measured GPU use (`corral.agent.health.GpuReporter`): sampled with each health
check, sent once with the next heartbeat (with its age), never at the cost of the heartbeat.
End to end with a real agent: test_agent_accelerators.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral.agent.client import Refused
from corral.agent.health import GpuReporter
from corral.agent.protocol import DeviceUseIn, HostFacts, SyncIn, SyncOut
from corral.agent.runtime import Agent, AgentSettings
from corral.backends.device_use import DeviceUse
from corral.backends.health import DeviceHealth, FakeGpuHealthProbe

MIB = 2**20


def _reporter(probe: FakeGpuHealthProbe, interval_s: float = 10.0) -> GpuReporter:
    return GpuReporter(interval_s, 2, "H100", probe=lambda _: probe)


def test_a_sample_goes_once_with_its_age_then_again_at_the_next_check() -> None:
    probe = FakeGpuHealthProbe([DeviceHealth(0, 0.0), DeviceHealth(1, 0.0)],
                               use=[DeviceUse(0, 0.0, 0.03, 5 * MIB, 80 * MIB),
                                    DeviceUse(1, 0.0, 1.0, 79 * MIB, 80 * MIB)])
    reporter = _reporter(probe)
    reporter.report(100.0)
    sent = reporter.use(102.5)
    assert sent == [DeviceUseIn(device=0, utilization=0.03, memory_used_bytes=5 * MIB,
                                memory_total_bytes=80 * MIB, age_s=2.5),
                    DeviceUseIn(device=1, utilization=1.0, memory_used_bytes=79 * MIB,
                                memory_total_bytes=80 * MIB, age_s=2.5)]
    assert reporter.use(103.0) is not None  # not delivered yet (the sync failed): kept
    reporter.use_delivered(sent)
    reporter.report(105.0)  # before the interval: no new check, no new sample
    assert reporter.use(105.0) is None
    reporter.report(110.0)
    again = reporter.use(110.0)
    assert again is not None and again[0].age_s == 0.0


def test_a_probe_that_raises_on_sampling_costs_no_heartbeat() -> None:
    class Broken(FakeGpuHealthProbe):
        def sample(self, now: float) -> list[DeviceUse]:
            raise RuntimeError("driver went away mid-sample")
    reporter = _reporter(Broken([DeviceHealth(0, 0.0), DeviceHealth(1, 0.0)]))
    health = reporter.report(0.0)
    assert health is not None and health.health == "healthy"
    assert reporter.use(0.0) is None


def test_no_library_no_sample_and_the_sync_body_leaves_the_field_out() -> None:
    reporter = _reporter(FakeGpuHealthProbe(available=False, unavailable_reason="no NVML"))
    reporter.report(0.0)
    assert reporter.use(0.0) is None
    # a server of an earlier release refuses unknown fields: None is not sent at all
    from corral.agent.client import AgentClient
    sent: list[str] = []

    class Capture(AgentClient):
        def _post(self, path: str, secret: str, body: str, timeout: float | None = None) -> str:
            sent.append(body)
            return json.dumps({"seq": 0, "assignments": []})
    Capture("http://x").sync("c", SyncIn())
    Capture("http://x").sync("c", SyncIn(gpu_use=[DeviceUseIn(
        device=0, utilization=0.5, memory_used_bytes=1, memory_total_bytes=2, age_s=0.0)]))
    assert "gpu_use" not in json.loads(sent[0])
    assert json.loads(sent[1])["gpu_use"][0]["utilization"] == 0.5


class _Server:
    """The agent's client; `old`: a server of an earlier release, which refuses `gpu_use`
    (extra=forbid), as the API words it."""

    def __init__(self, old: bool) -> None:
        self.old, self.syncs = old, 0
        self.use: list[list[DeviceUseIn] | None] = []

    def sync(self, credential: str, request: SyncIn) -> SyncOut:
        self.syncs += 1
        if self.old and request.gpu_use is not None:
            raise Refused(422, "invalid_request", "gpu_use: unknown field; check its spelling")
        self.use.append(request.gpu_use)
        return SyncOut(seq=0, assignments=[])

    def ship_logs(self, credential: str, chunks: list[Any]) -> list[int]:
        return []


def _agent(tmp_path: Path, server: _Server, now: list[float]) -> Agent:
    agent = Agent(AgentSettings(server="http://127.0.0.1:9", data_dir=tmp_path, node_id="h",
                                gpu_probe_interval_s=10, known_answer_interval_s=0,
                                poll_wait_s=0), HostFacts(gpus=1),
                  client=server, clock=lambda: now[0])  # type: ignore[arg-type]
    agent.credential = "cred"
    agent.gpu = _reporter(FakeGpuHealthProbe([DeviceHealth(0, 0.0)],
                                             use=[DeviceUse(0, 0.0, 0.25, 1, 2)]))
    return agent


@pytest.mark.parametrize("old", [False, True])
def test_the_heartbeat_carries_each_sample_once_and_an_older_server_is_not_refused_twice(
        tmp_path: Path, old: bool) -> None:
    server, now = _Server(old), [0.0]
    agent = _agent(tmp_path, server, now)
    for _ in range(3):
        agent.turn()
        now[0] += 20.0  # past the probe's interval: a new check, a new sample
    if old:  # refused once, not fatal; then the heartbeat goes on without the field
        assert (server.syncs, server.use) == (3, [None, None])
    else:
        assert [u is not None and u[0].utilization for u in server.use] == [0.25, 0.25, 0.25]
