"""The wire between `corral agent` and the control plane: JSON bodies as pydantic models.

    POST /agent/v1/join   Bearer <join token>       JoinIn  -> JoinOut (the node credential)
    POST /agent/v1/sync   Bearer <node credential>  SyncIn  -> SyncOut (heartbeat + long poll)
    POST /agent/v1/logs   Bearer <node credential>  LogsIn  -> LogsOut (next offsets)
    POST /agent/v1/execs/{id}   Bearer <node credential>  ExecDone (a relayed `corral exec`)
    WS   /agent/v1/tunnels/{id} Bearer <node credential>  a relayed `corral port-forward` or
                                                          `corral ssh` (its terminal)

Both sides import these models, so the agent and the server cannot disagree on a field. Times in
bodies are durations (seconds ago, seconds left), never instants: the hosts' clocks need not
agree with the server's.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from corral.spec.labels import MAX_HOST_LABELS

__all__ = [
    "AssignmentOut",
    "CheckIn",
    "DeviceUseIn",
    "ExecDone",
    "ExecOrder",
    "GpuHealthIn",
    "HostFacts",
    "JoinIn",
    "JoinOut",
    "LogChunk",
    "LogsIn",
    "LogsOut",
    "ProgressIn",
    "ReportIn",
    "ShellOrder",
    "SyncIn",
    "SyncOut",
    "TunnelOrder",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
_NAME = Field(default="", max_length=127)
_Size = Annotated[int, Field(ge=0, le=2**62)]
_Ago = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HostFacts(_Strict):
    """What a host declares about itself when it joins (GPUs from NVML where it has them)."""

    gpus: int = Field(default=0, ge=0, le=1024)
    gpu_model: str = Field(default="none", min_length=1, max_length=63)
    gpu_memory_mib: int = Field(default=0, ge=0, le=2**31 - 1)
    cpu_milli: int = Field(default=0, ge=0, le=2**31 - 1)
    memory_mib: int = Field(default=0, ge=0, le=2**62)
    provider: str = Field(default="agent", min_length=1, max_length=63)
    region: str = Field(default="default", min_length=1, max_length=63)
    zone: str = Field(default="default", min_length=1, max_length=63)
    rack: str = _NAME
    instance_type: str = _NAME
    instance_id: str = Field(default="", max_length=200)
    price_per_gpu_hour: float = Field(default=0.0, ge=0, le=1e6)
    capacity_kind: str = Field(default="owned", pattern=r"^(owned|on-demand|spot|reserved)$")
    #: where other hosts reach this one (a gang's rendezvous when it runs worker 0)
    address: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    hostname: str = Field(default="", max_length=255)
    #: its `--label` flags (at most MAX_LABELS: the pool file bounds them merged) and the
    #: agent's own corral.dev/ ones
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_HOST_LABELS)
    version: str = Field(default="", max_length=63)


class JoinIn(_Strict):
    node_id: str = Field(pattern=_ID)
    facts: HostFacts


class JoinOut(_Strict):
    node_id: str
    credential: str


class ProgressIn(_Strict):
    steps: int = Field(ge=0, le=2**62)
    steps_per_s: float = Field(gt=0, le=1e12, allow_inf_nan=False)
    total_steps: int | None = Field(default=None, ge=1, le=2**62)


class ReportIn(_Strict):
    workload_id: str = Field(pattern=_ID)
    attempt: int = Field(ge=0, le=2**31 - 1)
    worker: int = Field(ge=0, le=2**31 - 1)
    state: str = Field(pattern=r"^(starting|running|succeeded|failed|stopped|lost)$")
    reason: str = Field(max_length=64)
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    ended_s_ago: float | None = Field(default=None, ge=0, le=1e9)
    message: str = Field(default="", max_length=4096)
    #: what the worker last wrote to CORRAL_PROGRESS_FILE (`corral.backends.progress`)
    progress: ProgressIn | None = None


class CheckIn(_Strict):
    """One failed GPU health check (`corral.backends.health.Check`)."""

    name: str = Field(max_length=32)
    severity: str = Field(pattern=r"^(drain|warn)$")
    reason: str = Field(max_length=1024)
    device: int | None = Field(default=None, ge=0, le=1024)


class GpuHealthIn(_Strict):
    """The host's GPU health verdict (`corral.backends.health.node_verdict`), sent when it
    changed and on the first sync after the agent starts."""

    health: str = Field(pattern=r"^(healthy|degraded|unhealthy)$")
    reason: str = Field(max_length=4096)
    checked: bool = True
    checks: list[CheckIn] = Field(default_factory=list, max_length=1024)


class DeviceUseIn(_Strict):
    """One device's measured use (`corral.backends.device_use.DeviceUse`): compute
    utilisation 0..1 and memory in use, sampled `age_s` before the sync was sent."""

    device: int = Field(ge=0, le=1024)
    utilization: float = Field(ge=0, le=1, allow_inf_nan=False)
    memory_used_bytes: _Size
    memory_total_bytes: _Size
    age_s: _Ago


class SyncIn(_Strict):
    #: the assignment version the agent last acted on; the server answers at once when it differs
    known_seq: int = Field(default=-1, ge=-1)
    wait_s: float = Field(default=0.0, ge=0, le=30)
    workers: list[ReportIn] = Field(default_factory=list, max_length=10_000)
    gpu_health: GpuHealthIn | None = None
    #: each device's latest measured use, sent once per sample (the health probe's interval);
    #: None: no new sample (omitted from the body: a server of an earlier release refuses it)
    gpu_use: list[DeviceUseIn] | None = Field(default=None, max_length=1024)
    #: the container runtime the agent found at its start (`podman`, `none`), sent on its
    #: first sync: the join's facts are not sent again by an agent restarted over its data
    #: dir (an upgrade, podman installed since); None: not sent (omitted from the body)
    container_runtime: str | None = Field(default=None, pattern=r"^[a-z0-9._-]{1,63}$")


class AssignmentOut(_Strict):
    workload_id: str
    attempt: int
    worker: int
    spec: dict[str, Any]
    master_addr: str
    master_port: int
    #: a stop was requested: seconds left before SIGKILL (0: kill now), and why
    stop_grace_left_s: float | None = None
    stop_reason: str = ""
    #: the server declared this node lost while the worker ran: kill it, never report it again
    fenced: bool = False
    #: the worker's state as last reported ("starting" until this host reported it): a host
    #: that finds a reported worker it has no record of lost its records, and must not start
    #: it again (it may have run, or still run, elsewhere on this host)
    state: str = "starting"


class ExecOrder(_Strict):
    """`corral exec` relayed to the host of the worker (`corral.api.agent_relay`): run `argv`
    beside it, answer with ExecDone at POST /agent/v1/execs/{id}."""

    id: str
    workload_id: str
    attempt: int
    worker: int
    argv: list[str]
    timeout_s: float
    max_bytes: int


class ExecDone(_Strict):
    """What the host answers; `error` (with `field`) when it could not run it at all."""

    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    truncated: bool = False
    #: "" when it ran; else conflict (no live worker here) or invalid (argv[0] not runnable)
    error: str = Field(default="", pattern=r"^(|conflict|invalid)$")
    message: str = Field(default="", max_length=4096)


class TunnelOrder(_Strict):
    """`corral port-forward` relayed to the host: if the worker's processes listen on `port`,
    connect to it and dial WS /agent/v1/tunnels/{id}; the first message says ok or why not."""

    id: str
    workload_id: str
    attempt: int
    worker: int
    port: int


class ShellOrder(_Strict):
    """`corral ssh` relayed to the host: open a shell on a terminal of `rows` x `cols` beside
    the worker and dial WS /agent/v1/tunnels/{id}; the first message says ok or why not, then
    the terminal's bytes go both ways as binary messages, a resize comes as the text
    `{"resize": [rows, cols]}`, and the shell's end as the text `{"exit": N}` before the host
    closes. The server closing first (the user left, a session limit) hangs the shell up."""

    id: str
    workload_id: str
    attempt: int
    worker: int
    rows: int = Field(ge=1, le=1000)
    cols: int = Field(ge=1, le=1000)


class SyncOut(_Strict):
    seq: int
    assignments: list[AssignmentOut]
    #: relayed `corral exec`, `corral port-forward` and `corral ssh` orders for this node
    #: (issue 13)
    execs: list[ExecOrder] = Field(default_factory=list)
    tunnels: list[TunnelOrder] = Field(default_factory=list)
    shells: list[ShellOrder] = Field(default_factory=list)


class LogChunk(_Strict):
    workload_id: str = Field(pattern=_ID)
    attempt: int = Field(ge=0, le=2**31 - 1)
    worker: int = Field(ge=0, le=2**31 - 1)
    offset: int = Field(ge=0, le=2**62)
    data_b64: str = Field(max_length=400_000)
    #: the runner's new (log size, seconds ago) samples: when the log reached each size, as a
    #: duration (clocks differ); the server keeps them for `corral logs --timestamps`
    times: list[tuple[_Size, _Ago]] = Field(default_factory=list, max_length=4096)


class LogsIn(_Strict):
    chunks: list[LogChunk] = Field(max_length=64)


class LogsOut(_Strict):
    #: per chunk, in order: the offset the server wants next for that worker's log
    next_offsets: list[int]
