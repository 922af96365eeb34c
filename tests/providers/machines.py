"""Emulated EC2 machines for tests against moto: each running instance of the cluster "boots"
a real `corral agent` process from its user-data, and dies (agent and workers killed) once EC2
says it is shutting down or terminated, as bench/autoscale.py's booter does.

Moto boots nothing: a thread lists the cluster's instances through the EC2 API, reads each
running one's user-data back (DescribeInstanceAttribute), parses it with the module that wrote
it (corral.providers.bootstrap) and starts the agent with that script's server, join token and
flags, plus what a real host finds out itself (its GPUs, from DescribeInstanceTypes: there is
no NVML here; its instance id, used as its node id)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.providers.base import TAG_CLUSTER
from corral.providers.bootstrap import parse_user_data
from corral.testing.corral_up import stop_workers


@dataclass
class Machines:
    ec2: Any
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Machines:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
            except Exception as e:
                self.errors.append(repr(e))
            self._stop.wait(0.3)

    def _once(self) -> None:
        filters = [{"Name": "tag-key", "Values": [TAG_CLUSTER]}]
        for r in self.ec2.describe_instances(Filters=filters)["Reservations"]:
            for i in r["Instances"]:
                iid, state = i["InstanceId"], i["State"]["Name"]
                if iid not in self.procs and state == "running":
                    self.procs[iid] = self._boot(iid, i["InstanceType"])
                elif iid in self.procs and state in ("shutting-down", "terminated"):
                    self._kill(iid)

    def _boot(self, iid: str, itype: str) -> subprocess.Popen[bytes]:
        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        boot = parse_user_data(base64.b64decode(attr["UserData"]["Value"]).decode())
        t = self.ec2.describe_instance_types(InstanceTypes=[itype])["InstanceTypes"][0]
        g = t["GpuInfo"]["Gpus"][0]
        home = self.root / iid
        home.mkdir(parents=True)
        args = [sys.executable, "-m", "corral.agent", "--server", boot.server,
                *boot.argv(), "--instance-id", iid,
                "--node-id", iid, "--data-dir", str(home / "state"),
                "--gpus", str(g["Count"]), "--gpu-model", str(g["Name"]),
                "--gpu-memory-mib", str(g["MemoryInfo"]["SizeInMiB"]), "--cpu", "16",
                "--memory-mib", "65536", "--address", "127.0.0.1", "--worker-user", "same",
                "--poll-wait", "0.5", "--lease", "8"]
        with open(home / "agent.log", "ab") as log:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={
                **os.environ, "CORRAL_JOIN_TOKEN": boot.join_token, "PYTHONUNBUFFERED": "1"})

    def _kill(self, iid: str) -> None:
        if iid in self.dead:
            return
        self.dead.add(iid)
        proc = self.procs[iid]
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stop_workers(self.root / iid / "state")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for iid in list(self.procs):
            self._kill(iid)
