"""The `corral agent` command (also `python -m corral.agent`): imports neither the server, the
store nor the rest of the CLI, so a host needs corral and httpx only."""

from __future__ import annotations

import logging
import os
import signal
import socket
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["agent"]


def agent(
    server: Annotated[str, typer.Option("--server", help="the control plane's URL")],
    join_token: Annotated[str | None, typer.Option(
        "--join-token", envvar="CORRAL_JOIN_TOKEN",
        help="spent once for this node's credential (kept in the data dir)")] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="the agent's state and work")
                        ] = Path("/var/lib/corral-agent"),
    node_id: Annotated[str | None, typer.Option("--node-id", help="default: the host name")
                       ] = None,
    gpus: Annotated[int | None, typer.Option("--gpus", min=0, help="declare GPUs (default: "
                                             "NVML's count, 0 without NVML)")] = None,
    gpu_model: Annotated[str | None, typer.Option("--gpu-model")] = None,
    gpu_memory_mib: Annotated[int | None, typer.Option("--gpu-memory-mib", min=0)] = None,
    vendor: Annotated[str | None, typer.Option(
        "--vendor", help="who makes the accelerators: nvidia, amd, intel, aws or google "
        "(default: the library that found them, else read from --gpu-model)")] = None,
    cpu: Annotated[float | None, typer.Option("--cpu", min=0, help="CPUs offered")] = None,
    memory_mib: Annotated[int | None, typer.Option("--memory-mib", min=0)] = None,
    provider: Annotated[str, typer.Option("--provider")] = "agent",
    region: Annotated[str, typer.Option("--region")] = "default",
    zone: Annotated[str, typer.Option("--zone")] = "default",
    rack: Annotated[str, typer.Option("--rack")] = "",
    instance_type: Annotated[str, typer.Option("--instance-type")] = "",
    instance_id: Annotated[str, typer.Option("--instance-id")] = "",
    price: Annotated[float, typer.Option("--price", min=0, help="per GPU-hour")] = 0.0,
    capacity_kind: Annotated[str, typer.Option("--capacity-kind",
                                               help="owned, on-demand, spot or reserved")
                             ] = "owned",
    address: Annotated[str | None, typer.Option(
        "--address", help="where other hosts reach this one (default: the host name's address)")
    ] = None,
    poll_wait: Annotated[float, typer.Option("--poll-wait", min=0, max=30)] = 2.0,
    lease: Annotated[float, typer.Option(
        "--lease", min=1, help="seconds without this agent before its workers are killed "
        "(keep it under the server's --agent-timeout)")] = 20.0,
    self_fence_after: Annotated[float, typer.Option(
        "--self-fence-after", min=0, help="kill every worker after this long without the "
        "server (0: never; see the agent README)")] = 0.0,
    gpu_probe_interval: Annotated[float, typer.Option(
        "--gpu-probe-interval", min=0, help="seconds between GPU health checks (NVML, or "
        "amdsmi on AMD hosts), reported with the heartbeat; 0: never")] = 10.0,
    known_answer_interval: Annotated[float, typer.Option(
        "--known-answer-interval", min=0, help="seconds between known-answer tests (silent "
        "data corruption) of each idle GPU, with torch or cupy; 0: never")] = 3600.0,
    spot_notice_url: Annotated[str, typer.Option(
        "--spot-notice-url", help="EC2 instance metadata to poll for a spot interruption "
        "notice (http://169.254.169.254 on EC2; the aws provider sets it on spot instances); "
        "empty: never")] = "",
    worker_user: Annotated[str | None, typer.Option(
        "--worker-user", help="per-queue, a user name, or same; default per-queue as root")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="key=value: a label this host joins with, for work's node_selector "
        "(repeat for more; the ssh and aws providers pass their pool file `labels`)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run this host's agent: join the pool, run the workers the server assigns, ship logs."""
    from pydantic import ValidationError

    from corral.agent.host import Declared, host_facts
    from corral.agent.protocol import HostFacts
    from corral.agent.runtime import Agent, AgentSettings
    from corral.backends.containers import detect_runtime, runtime_problem
    from corral.backends.worker_users import PER_QUEUE, SAME_USER, WorkerUserError, WorkerUsers

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per sync says nothing
    os.umask(0o077)
    mode = worker_user or (PER_QUEUE if os.geteuid() == 0 else SAME_USER)
    try:
        users = None if mode == SAME_USER else WorkerUsers(mode)
        # found once: what the host reports at join and what runs its image: workers
        containers = detect_runtime()
        if containers is None:
            logging.getLogger("corral.agent").warning(
                "image: workloads will not be placed on this host: %s", runtime_problem())
        facts: HostFacts = host_facts(Declared(
            gpus=gpus, gpu_model=gpu_model, gpu_memory_mib=gpu_memory_mib,
            cpu_milli=None if cpu is None else int(cpu * 1000), memory_mib=memory_mib,
            provider=provider, region=region, zone=zone, rack=rack, instance_type=instance_type,
            instance_id=instance_id, price_per_gpu_hour=price, capacity_kind=capacity_kind,
            address=address, vendor=_vendor(vendor), labels=_labels(label or [])),
            containers=containers)
    except (WorkerUserError, ValidationError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    settings = AgentSettings(server=server, data_dir=data_dir,
                             node_id=node_id or socket.gethostname(), join_token=join_token,
                             poll_wait_s=poll_wait, lease_s=lease,
                             self_fence_after_s=self_fence_after, worker_users=users,
                             gpu_probe_interval_s=gpu_probe_interval,
                             known_answer_interval_s=known_answer_interval,
                             spot_notice_url=spot_notice_url)
    runner = Agent(settings, facts, containers=containers)
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop the loop; workers run on (README)
        signal.signal(sig, lambda *_: runner.stop_event.set())
    from corral.agent.client import Refused

    try:
        runner.run()
    except Refused as e:
        typer.echo(f"error: the server refused this agent: {e.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        runner.client.close()


def _labels(given: list[str]) -> dict[str, str]:
    """--label key=value flags, checked as a pool file's labels (corral.spec.labels), and as
    many as the pool file allows a node (the join refuses more: a 422 after start-up, not here)."""
    from corral.spec.labels import MAX_LABELS, check_labels

    pairs = dict(g.split("=", 1) for g in given if "=" in g)
    bad = [g for g in given if "=" not in g]
    if bad:
        raise ValueError(f"--label {bad[0][:80]!r}: give key=value (for example team=vision)")
    if len(pairs) > MAX_LABELS:
        raise ValueError(f"--label: {len(pairs)} labels given; a host joins with at most "
                         f"{MAX_LABELS}: drop some")
    try:
        return check_labels(pairs)
    except ValueError as e:
        raise ValueError(f"--label: {e}") from None


def _vendor(given: str | None) -> str | None:
    """--vendor, checked: a clear error names the flag and the choices."""
    if given is None:
        return None
    from corral.core.vendors import Vendor

    choices = [str(v) for v in Vendor]
    if given.lower() not in choices:
        raise ValueError(f"--vendor {given!r}: one of {', '.join(choices)}")
    return given.lower()
