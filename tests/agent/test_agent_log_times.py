"""The agent ships its runner's log-time samples with the log bytes (`corral logs --timestamps`
on agents); a server of the last release refuses the unknown `times` field (422), and the agent
then ships the bytes alone instead of stopping. End to end with real agents:
tests/agent/test_agent_exec.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.agent.client import Refused
from corral.agent.protocol import HostFacts
from corral.agent.runtime import Agent, AgentSettings


class OldServer:
    """Takes log bytes, refuses `times` as a server without the field does."""

    def __init__(self) -> None:
        self.shipped: list[list[Any]] = []

    def ship_logs(self, credential: str, chunks: list[Any]) -> list[int]:
        if any(c[5] for c in chunks):
            raise Refused(422, "invalid_request", "chunks[0].times: unknown field; check its "
                          "spelling against the documented fields (docs/specs.md)")
        self.shipped.append(list(chunks))
        return [c[3] + len(c[4]) for c in chunks]


def test_an_older_server_gets_the_log_bytes_without_times(tmp_path: Path) -> None:
    server = OldServer()
    agent = Agent(AgentSettings(server="http://127.0.0.1:9", data_dir=tmp_path, node_id="h",
                                gpu_probe_interval_s=0), HostFacts(gpus=0),
                  client=server)  # type: ignore[arg-type]
    agent.credential = "cred"
    batch = [("w", 0, 0, 0, b"line\n", [(5, 0.5)])]
    assert agent._ship_batch(batch) == [5]
    assert server.shipped == [[("w", 0, 0, 0, b"line\n", [])]]
    assert agent.log_times is False and agent._new_log_times(("w", 0, 0)) == []
