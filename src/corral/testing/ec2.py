"""EC2 for tests: moto in server mode (a real EC2 HTTP API on loopback), and a "boot" step.

`MotoServer` starts ``moto_server`` on a free loopback port in its own temp dir and stops it by
its handle. Its `env` holds fake credentials and the region: pass it to the code under test
(the test's own environment), never into the real one. No real credentials are read or needed.

Moto keeps instances as records and boots nothing. `Ec2Booter` plays the part of the machine:
for each instance of a cluster that is running and not yet booted it reads the instance's
user-data back through the EC2 API (DescribeInstanceAttribute), parses it with the same module
that wrote it (`corral.providers.bootstrap`), and runs the join step it describes through a
callback (`join(instance_id, boot) -> node id`): a test passes one that calls the control
plane's agent join API, or starts a real `corral agent` process with the script's environment.
"""

from __future__ import annotations

import atexit
import base64
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from corral.providers.base import TAG_CLUSTER
from corral.providers.bootstrap import AgentBoot, parse_user_data
from corral.testing.daemons import Daemon, free_tcp_ports, wait_until
from corral.testing.errors import HarnessUnavailable

__all__ = ["Ec2Booter", "MotoServer", "moto_server"]

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing"}


class MotoServer:
    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.port = free_tcp_ports(1)[0]
        self.dir = Path(tempfile.mkdtemp(prefix="corral-moto-"))
        binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        if not Path(binary).exists():
            raise HarnessUnavailable("moto_server not found: install the dev extras "
                                     "(pip install -e '.[dev]', which includes moto[server])")
        self.daemon = Daemon("moto_server", [binary, "-H", "127.0.0.1", "-p", str(self.port)],
                             self.dir / "moto.log", env={"PATH": "/usr/bin:/bin", "HOME": str(self.dir)})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What boto3 needs to talk to this server only: fake credentials, the region."""
        return {**FAKE_CREDENTIALS, "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL": self.url}

    def start(self) -> MotoServer:
        self.daemon.start()
        atexit.register(self.stop)
        wait_until(lambda: urllib.request.urlopen(self.url + "/moto-api/", timeout=2).status == 200,
                   timeout=30, what="moto_server to answer", watch=[self.daemon])
        return self

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        req = urllib.request.Request(self.url + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def stop(self) -> None:
        self.daemon.stop(grace=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def moto_server(region: str = "us-east-1") -> Iterator[MotoServer]:
    server = MotoServer(region).start()
    try:
        yield server
    finally:
        server.stop()


class Ec2Booter:
    """Boots the running instances of `cluster_id` once each by running their join step."""

    def __init__(self, ec2: Any, cluster_id: str,
                 join: Callable[[str, AgentBoot], str]) -> None:
        self.ec2, self.cluster_id, self.join = ec2, cluster_id, join
        self.booted: dict[str, str] = {}  # instance id -> node id

    def boot_pending(self) -> list[str]:
        """Boot every running instance not booted yet; returns their ids."""
        done = []
        filters = [{"Name": f"tag:{TAG_CLUSTER}", "Values": [self.cluster_id]},
                   {"Name": "instance-state-name", "Values": ["pending", "running"]}]
        for r in self.ec2.describe_instances(Filters=filters)["Reservations"]:
            for i in r["Instances"]:
                iid = i["InstanceId"]
                if iid in self.booted:
                    continue
                self.booted[iid] = self.join(iid, self.user_data(iid))
                done.append(iid)
        return sorted(done)

    def user_data(self, instance_id: str) -> AgentBoot:
        attr = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        text = base64.b64decode(attr["UserData"]["Value"]).decode()
        return parse_user_data(text)
