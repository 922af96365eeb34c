"""The agent's HTTP client for the agent wire (`corral.agent.protocol`), and its retry policy."""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from corral.agent.protocol import (
    ExecDone,
    HostFacts,
    JoinIn,
    JoinOut,
    LogChunk,
    LogsIn,
    LogsOut,
    SyncIn,
    SyncOut,
)
from corral.agent.spot import NoticeIn, NoticeOut

__all__ = ["AgentClient", "Backoff", "Refused", "Unreachable"]


class Unreachable(Exception):
    """The server did not answer (down, restarting, network gone): retry with backoff."""


class Refused(Exception):
    """The server answered no (bad token, a conflict): retrying the same request will not help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class Backoff:
    """Exponential backoff with jitter: base, 2 base, 4 base ... up to `cap`, each times a
    random factor in [0.5, 1] so that a fleet of agents does not reconnect in lockstep after
    the server comes back."""

    base_s: float = 0.5
    cap_s: float = 10.0
    failures: int = 0
    rng: random.Random | None = None

    def next_delay(self) -> float:
        self.failures += 1
        delay = min(self.cap_s, self.base_s * 2.0 ** (self.failures - 1))
        jitter: float = (self.rng or random).random()
        return delay * (0.5 + 0.5 * jitter)

    def reset(self) -> None:
        self.failures = 0


class AgentClient:
    def __init__(self, server: str, *, timeout_s: float = 10.0) -> None:
        self.server = server.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx.Client(base_url=self.server, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, secret: str, body: str, timeout: float | None = None) -> str:
        try:
            r = self._http.post(path, content=body, timeout=timeout or self.timeout_s,
                                headers={"Authorization": f"Bearer {secret}",
                                         "Content-Type": "application/json"})
        except httpx.HTTPError as e:
            raise Unreachable(f"{self.server}: {e}") from e
        if r.status_code >= 500:
            raise Unreachable(f"{self.server}: HTTP {r.status_code}")
        if r.status_code >= 400:
            try:
                data = r.json()
                code, message = str(data.get("error", "")), str(data.get("message", r.text))
            except ValueError:
                code, message = "", r.text
            if r.status_code == 429:
                raise Unreachable(f"{self.server}: rate limited: {message}")
            raise Refused(r.status_code, code, message)
        return r.text

    def join(self, join_token: str, node_id: str, facts: HostFacts) -> JoinOut:
        body = JoinIn(node_id=node_id, facts=facts).model_dump_json()
        return JoinOut.model_validate_json(self._post("/agent/v1/join", join_token, body))

    def sync(self, credential: str, request: SyncIn) -> SyncOut:
        timeout = self.timeout_s + request.wait_s
        # unset, the runtime report and the GPU use are left out: a server of an earlier
        # release refuses them
        left_out = {name for name in ("container_runtime", "gpu_use")
                    if getattr(request, name) is None}
        body = request.model_dump_json(exclude=left_out or None)
        return SyncOut.model_validate_json(
            self._post("/agent/v1/sync", credential, body, timeout))

    def ship_logs(self, credential: str,
                  chunks: Sequence[tuple[str, int, int, int, bytes, list[tuple[int, float]]]],
                  ) -> list[int]:
        """(workload, attempt, worker, offset, bytes, (size, seconds ago) samples) each; the
        next offset the server wants."""
        body = LogsIn(chunks=[LogChunk(workload_id=w, attempt=a, worker=i, offset=o,
                                       data_b64=base64.b64encode(d).decode(), times=t)
                              for w, a, i, o, d, t in chunks]
                      # `times` only where there are some: a server of the last release
                      # refuses fields it does not know
                      ).model_dump_json(exclude_defaults=True)
        return LogsOut.model_validate_json(
            self._post("/agent/v1/logs", credential, body)).next_offsets

    def exec_done(self, credential: str, order_id: str, done: ExecDone) -> None:
        """The answer to a relayed `corral exec` (`corral.agent.relayed`)."""
        self._post(f"/agent/v1/execs/{order_id}", credential, done.model_dump_json(),
                   timeout=30.0)

    def notice(self, credential: str, request: NoticeIn) -> NoticeOut:
        """A spot interruption notice read on this host (`corral.agent.spot`)."""
        return NoticeOut.model_validate_json(
            self._post("/agent/v1/notice", credential, request.model_dump_json()))
