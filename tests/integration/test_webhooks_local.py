"""Webhooks end to end: a real `corral up` (local backend), a real worker, a real HTTP
receiver. The job's start and success are POSTed, signed with the queue's secret, and the
delivery log (`corral deliveries`) says delivered; a dead URL's delivery is retried, logged."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

from corral.control.webhooks import SIGNATURE_HEADER, verify
from corral.testing.corral_up import CorralServer
from corral.testing.webhook_receiver import Receiver

# a real server and a worker: ~10 s; tests/control/test_webhooks.py covers the rules in seconds
pytestmark = pytest.mark.slow

SECRET = "whsec-e2e-5d1c0a"


def test_start_and_success_are_posted_signed_and_logged(server: CorralServer,
                                                        tmp_path: Path) -> None:
    rx = Receiver()
    try:
        r = server.cli("secrets", "set", "hook", "--queue", "default", "-", check=False)
        assert r.returncode != 0  # no stdin value: refused, nothing set
        import subprocess

        set_ = subprocess.run([sys.executable, "-m", "corral.cli.main", "secrets", "set",
                               "hook", "--queue", "default", "-"], input=SECRET, text=True,
                              env=server.env(), capture_output=True, timeout=60)
        assert set_.returncode == 0, set_.stderr
        spec = tmp_path / "job.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "hooked", "queue": "default", "cpu": 0.1, "memory": "64MiB",
            "command": [sys.executable, "-c", "import time; time.sleep(2)"],
            "notify": [{"url": rx.url + "/ok", "events": ["started", "succeeded"],
                        "secret": "hook"},
                       {"url": "http://127.0.0.1:9/dead", "events": ["succeeded"],
                        "timeout": 1}]}))
        dry = server.cli("submit", "--dry-run", str(spec))
        assert f"notify: POST {rx.url}/ok on started, succeeded" in dry.stdout
        out = server.cli_json("submit", str(spec))
        wid = out[0]["workloads"][0]["id"]  # type: ignore[index]
        deadline = time.monotonic() + 60
        while len(rx.got) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        events = [json.loads(body)["event"] for _, _, body in rx.got]
        assert events == ["started", "succeeded"], server.log()
        for _, headers, body in rx.got:
            assert verify(SECRET, body, headers[SIGNATURE_HEADER], now=time.time())
        log = server.cli_json("deliveries", wid)
        got = sorted((d["url"].rsplit("/", 1)[1], d["event"], d["state"])  # type: ignore[index]
                     for d in log["items"])  # type: ignore[index]
        assert got[:2] == [("dead", "succeeded", "pending"), ("ok", "started", "delivered")]
        assert got[2] == ("ok", "succeeded", "delivered")
        dead = next(d for d in log["items"] if "dead" in d["url"])  # type: ignore[index]
        assert dead["attempts"] >= 1 and dead["last_error"] and dead["next_at"]
        table = server.cli("deliveries", wid).stdout
        assert "delivered" in table and "webhook deliveries" in table
        assert SECRET not in server.log()
    finally:
        rx.close()
