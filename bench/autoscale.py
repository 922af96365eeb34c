"""The pool autoscaler live: `corral up --backend agent` renting from EC2 (moto in server mode).

    python bench/autoscale.py [--jobs 4] [--gang 2] [--work-s 20] [--idle-timeout 20]
    python bench/autoscale.py --idle-timeout-for g6.12xlarge=5   # the provider's per-type key

What runs for real: `corral up` (the control loop, the pool autoscaler, the agent backend, the
API), the aws provider talking to moto_server's EC2 HTTP API through boto3 (DescribeInstanceTypes,
RunInstances with the agent's user-data and corral's tags, DescribeInstances by tag,
TerminateInstances), one real `corral agent` process per instance, real worker processes.

What is simulated: moto boots nothing. The bench plays the machine: a "booter" thread lists the
cluster's instances through the same EC2 API, reads each running one's user-data back
(DescribeInstanceAttribute), and starts `corral agent` with the server URL, join token and flags
that script carries (corral.providers.bootstrap.parse_user_data), plus what a real host would
find out itself (its GPUs: declared from DescribeInstanceTypes, since there is no NVML here; its
instance id, which a real host reads from the metadata endpoint). When EC2 says an instance is
shutting down or terminated, the booter kills its agent and workers, as the machine would die.
So "instance launched -> agent joined" includes no real VM boot (minutes on EC2): it is the
agent's start-up and join only. Money is the instances' list price x the time from the launch
decision to the termination, as EC2 would bill (per second) the same span.

It submits a burst that does not fit (the pool starts with no node): `--jobs` one-GPU jobs and a
gang of `--gang` workers x 4 GPUs, each working `--work-s` seconds, and measures per workload:
submit -> capacity requested (the autoscaler's launch decision in the audit log), -> node joined
(the agent registered: the node is in /v1/nodes), -> running; then per instance: its work ended
-> drained -> terminated (idle timeout); instances launched vs terminated; money vs GPU-hours.
It prints every row, then one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]

from corral.providers.base import TAG_CLUSTER
from corral.providers.bootstrap import parse_user_data
from corral.testing.corral_up import CorralServer
from corral.testing.ec2 import MotoServer

PRICES = {"g6.xlarge": 0.8048, "g6.12xlarge": 4.6016}  # the shipped catalog's list prices


@dataclass
class Machine:
    """One emulated instance: its agent process, and when things happened to it."""

    instance_id: str
    instance_type: str
    seen_running: float
    proc: subprocess.Popen[bytes] | None = None
    data_dir: Path | None = None
    died_at: float | None = None


@dataclass
class Booter:
    """Plays the machines of the cluster: boots running instances, kills terminated ones."""

    ec2: Any
    root: Path
    machines: dict[str, Machine] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    gpus: dict[str, tuple[int, str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.once()
            except Exception as e:  # a bench keeps going and reports it
                self.errors.append(repr(e))
            self.stop.wait(0.2)

    def once(self) -> None:
        filters = [{"Name": "tag-key", "Values": [TAG_CLUSTER]}]
        for r in self.ec2.describe_instances(Filters=filters)["Reservations"]:
            for i in r["Instances"]:
                iid, state = i["InstanceId"], i["State"]["Name"]
                m = self.machines.get(iid)
                if m is None and state == "running":
                    self.machines[iid] = self.boot(iid, i["InstanceType"])
                elif m is not None and state in ("shutting-down", "terminated") and \
                        m.died_at is None:
                    self.kill(m)

    def hardware(self, itype: str) -> tuple[int, str, int]:
        if itype not in self.gpus:
            t = self.ec2.describe_instance_types(InstanceTypes=[itype])["InstanceTypes"][0]
            g = t["GpuInfo"]["Gpus"][0]
            self.gpus[itype] = (int(g["Count"]), str(g["Name"]),
                                int(g["MemoryInfo"]["SizeInMiB"]))
        return self.gpus[itype]

    def boot(self, iid: str, itype: str) -> Machine:
        m = Machine(iid, itype, time.time())
        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        boot = parse_user_data(base64.b64decode(attr["UserData"]["Value"]).decode())
        gpus, model, mem = self.hardware(itype)
        m.data_dir = self.root / iid
        m.data_dir.mkdir(parents=True)
        args = [sys.executable, "-m", "corral.agent", "--server", boot.server,
                *boot.argv(), "--instance-id", iid,
                "--node-id", iid, "--data-dir", str(m.data_dir / "state"),
                "--gpus", str(gpus), "--gpu-model", model, "--gpu-memory-mib", str(mem),
                "--cpu", "16", "--memory-mib", "65536", "--address", "127.0.0.1",
                "--worker-user", "same", "--poll-wait", "0.5", "--lease", "8"]
        with open(m.data_dir / "agent.log", "ab") as log:
            m.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={
                **os.environ, "CORRAL_JOIN_TOKEN": boot.join_token, "PYTHONUNBUFFERED": "1"})
        return m

    def kill(self, m: Machine) -> None:
        m.died_at = time.time()
        if m.proc is not None and m.proc.poll() is None:
            m.proc.kill()
            m.proc.wait(10)
        if m.data_dir is not None:
            from corral.testing.corral_up import stop_workers

            stop_workers(m.data_dir / "state")

    def shutdown(self) -> None:
        self.stop.set()
        for m in self.machines.values():
            if m.died_at is None:
                self.kill(m)


def _pool(image: str, moto_url: str, idle_timeout: float,
          per_type: dict[str, float] | None = None) -> str:
    return json.dumps({
        "providers": [{
            "name": "aws-moto", "kind": "aws", "capacity_kind": "on-demand",
            "region": "us-east-1", "max_nodes": 8, "max_spend_per_hour": 50,
            "idle_timeouts": per_type or {},
            "settings": {"region": "us-east-1", "image_id": image,
                         "instance_types": sorted(PRICES), "zones": ["us-east-1a"],
                         "capacity_kinds": ["on-demand"], "on_demand_prices": PRICES,
                         "endpoint_url": moto_url}}],
        "queues": [{"name": "default", "quota_gpus": 64}],
        "autoscaler": {"every": 1, "idle_timeout": idle_timeout, "join_timeout": 120,
                       "backoff_base": 5}})


def _work(name: str, gpus: int, workers: int, work_s: float) -> dict[str, Any]:
    return {"name": name, "queue": "default", "gpus": gpus, "workers": workers, "cpu": 1,
            "memory": "1GiB", "preemptible": False,
            "command": [sys.executable, "-c", f"import time; time.sleep({work_s})"]}


def _first(seq: list[float]) -> float | None:
    return min(seq) if seq else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=4, help="one-GPU jobs")
    ap.add_argument("--gang", type=int, default=2, help="workers of the 4-GPU gang (0: none)")
    ap.add_argument("--work-s", type=float, default=20.0)
    ap.add_argument("--idle-timeout", type=float, default=20.0)
    ap.add_argument("--idle-timeout-for", action="append", default=[], metavar="TYPE=SECONDS",
                    help="the provider's idle_timeouts key for one instance type (repeatable)")
    ap.add_argument("--timeout", type=float, default=300.0)
    a = ap.parse_args()
    a.per_type = {k: float(v) for k, v in (x.split("=", 1) for x in a.idle_timeout_for)}
    root = Path(tempfile.mkdtemp(prefix="corral-bench-autoscale-"))
    moto = MotoServer().start()
    env = {**moto.env, "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto.url,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    pool = root / "pool.yaml"
    pool.write_text(_pool(image, moto.url, a.idle_timeout, a.per_type))
    server = CorralServer(root / "cp", pool=pool, worker_user=None)
    server.extra_env = {**env, "CORRAL_ADVERTISE_URL": server.url}
    booter = Booter(ec2, root / "hosts")
    thread = threading.Thread(target=booter.run, daemon=True)
    load0 = os.getloadavg()
    try:
        server.start("--backend", "agent", "--agent-timeout", "15")
        thread.start()
        c = server.client()
        specs = [_work(f"job{i}", 1, 1, a.work_s) for i in range(a.jobs)]
        if a.gang:
            specs.append(_work("gang", 4, a.gang, a.work_s))
        submitted: dict[str, float] = {}
        for spec in specs:
            t = time.time()
            for w in c.submit(spec).workloads:
                submitted[w.id] = t
        joined_at: dict[str, float] = {}  # node id -> first seen in /v1/nodes
        deadline = time.time() + a.timeout
        while time.time() < deadline:
            for n in c.nodes():
                joined_at.setdefault(n.id, time.time())
            done = [c.get(w) for w in submitted]
            if all(w.state in ("succeeded", "failed", "cancelled") for w in done):
                break
            time.sleep(0.2)
        # capacity returned: every launched instance terminated after the idle timeout
        while time.time() < deadline:
            live = [i for r in ec2.describe_instances(Filters=[
                {"Name": "tag-key", "Values": [TAG_CLUSTER]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]}])
                ["Reservations"] for i in r["Instances"]]
            if not live:
                break
            time.sleep(0.5)
        load1 = os.getloadavg()
        report(c, ec2, booter, submitted, joined_at, a, (load0, load1))
    finally:
        booter.shutdown()
        server.stop()
        moto.stop()


def report(c: Any, ec2: Any, booter: Booter, submitted: dict[str, float],
           joined_at: dict[str, float], a: argparse.Namespace,
           load: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
    audit = c.audit(actor="autoscaler", limit=1000).items
    launches = [e for e in audit if e.action == "autoscale.launch"]
    decided: dict[str, float] = {}  # workload -> first launch decision for it
    launched_at: dict[str, float] = {}  # instance -> its launch decision
    price: dict[str, float] = {}
    for e in launches:
        for iid in e.target.split(","):
            launched_at[iid] = e.at
            price[iid] = float(e.detail["offer"]["price_per_hour"])
        for w in e.detail.get("workloads", []):
            decided.setdefault(w, e.at)
    terminated = {e.target: e.at for e in audit if e.action == "autoscale.terminate"}
    drained = {e.target: e.at for e in audit if e.action == "autoscale.drain"}
    rows: list[dict[str, Any]] = []
    print("workload        submit->requested  ->node joined  ->running   nodes")
    for wid, t0 in submitted.items():
        w = c.get(wid)
        nodes = sorted({p.node_id for p in w.placements})
        joined = max((joined_at.get(n, float("nan")) for n in nodes), default=float("nan"))
        # the workload's own group id names the decision (a gang is one workload)
        req = decided.get(w.id) or decided.get(w.group_id)
        row = {"workload": w.name, "state": w.state, "nodes": nodes,
               "requested_s": None if req is None else round(req - t0, 2),
               "joined_s": round(joined - t0, 2) if joined == joined else None,
               "running_s": None if w.started_at is None else round(w.started_at - t0, 2),
               "work_s": None if w.started_at is None or w.finished_at is None
               else round(w.finished_at - w.started_at, 2)}
        rows.append(row)
        print(f"{w.name:15} {row['requested_s']!s:>17} {row['joined_s']!s:>13} "
              f"{row['running_s']!s:>10}   {','.join(nodes)}")
    print("instance              type          booted_s  idle->drain  idle->termin.  rented_s"
          "  cost")
    inst_rows: list[dict[str, Any]] = []
    spent = 0.0
    for iid, t in sorted(launched_at.items(), key=lambda kv: kv[1]):
        m = booter.machines.get(iid)
        ended = _last_work_end(c, submitted, iid)
        end = terminated.get(iid)
        cost = None if end is None else price[iid] * (end - t) / 3600
        spent += cost or 0.0
        r = {"instance": iid, "type": m.instance_type if m else "?", "price_per_hour": price[iid],
             "booted_s": None if m is None else round(m.seen_running - t, 2),
             "idle_to_drain_s": None if ended is None or iid not in drained
             else round(drained[iid] - ended, 2),
             "idle_to_terminate_s": None if ended is None or end is None else round(end - ended, 2),
             "rented_s": None if end is None else round(end - t, 2), "cost": cost}
        inst_rows.append(r)
        print(f"{iid:21} {r['type']:13} {r['booted_s']!s:>8} {r['idle_to_drain_s']!s:>13} "
              f"{r['idle_to_terminate_s']!s:>13} {r['rented_s']!s:>9} "
              f"{'-' if cost is None else f'{cost:.4f}'}")
    gpu_h = sum((r["work_s"] or 0) * _gpus(c, wid) for r, wid in zip(rows, submitted, strict=True)) / 3600
    per_gpu = {t: p / booter.hardware(t)[0] for t, p in PRICES.items()}
    work_value = sum((r["work_s"] or 0) * _gpus(c, wid) * per_gpu[_itype(c, wid, booter)]
                     for r, wid in zip(rows, submitted, strict=True)) / 3600
    out = {
        "bench": "autoscale", "workloads": len(rows), "instances_launched": len(launched_at),
        "instances_terminated": len(terminated),
        "leaked": sorted(set(launched_at) - set(terminated)),
        "submit_to_requested_s_median": _med([r["requested_s"] for r in rows]),
        "submit_to_joined_s_median": _med([r["joined_s"] for r in rows]),
        "submit_to_running_s_median": _med([r["running_s"] for r in rows]),
        "submit_to_running_s_max": max((r["running_s"] or 0) for r in rows),
        "idle_to_terminated_s_median": _med([r["idle_to_terminate_s"] for r in inst_rows]),
        "idle_to_terminated_s_median_by_type": {
            t: _med([r["idle_to_terminate_s"] for r in inst_rows if r["type"] == t])
            for t in sorted({r["type"] for r in inst_rows})},
        "idle_timeout_s": a.idle_timeout, "idle_timeouts": a.per_type,
        "money_spent": round(spent, 4),
        "work_gpu_hours": round(gpu_h, 5), "work_at_list_price": round(work_value, 4),
        "spent_over_work": round(spent / work_value, 2) if work_value else None,
        "booter_errors": booter.errors[:3], "load_before": load[0], "load_after": load[1]}
    print(json.dumps(out))


def _med(values: list[float | None]) -> float | None:
    xs = [v for v in values if v is not None]
    return round(statistics.median(xs), 2) if xs else None


def _gpus(c: Any, wid: str) -> int:
    w = c.get(wid)
    return sum(len(p.devices) for p in w.placements) if w.placements else 0


def _itype(c: Any, wid: str, booter: Booter) -> str:
    w = c.get(wid)
    node = w.placements[0].node_id if w.placements else ""
    m = booter.machines.get(node)
    return m.instance_type if m else "g6.xlarge"


def _last_work_end(c: Any, submitted: dict[str, float], node: str) -> float | None:
    ends = [w.finished_at for w in (c.get(x) for x in submitted)
            if w.finished_at is not None and any(p.node_id == node for p in w.placements)]
    return max(ends) if ends else None


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
        main()
