"""An agent's cache of downloaded workdir archives (`corral.agent.workdirs`) is bounded: after a
download the least recently used go over the size limit, never one an attempt still launched on
the host names, nor the one just fetched. Against a real local HTTP server serving the agent
wire's GET /agent/v1/workdirs/<digest>."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.agent.workdirs import AgentWorkdirs
from corral.backends.workdir_cache import CacheLimits

BLOBS: dict[str, bytes] = {}


class _Serve(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = BLOBS.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Serve)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _blob(i: int) -> str:
    data = bytes([i]) * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    BLOBS[digest] = data
    return digest


def _held(tmp_path: Path) -> set[str]:
    return {"sha256:" + p.name.removesuffix(".tar") for p in tmp_path.iterdir()}


def test_downloads_prune_the_least_recently_used_but_never_one_in_use(
        server: str, tmp_path: Path) -> None:
    in_use: set[str] = set()
    cache = AgentWorkdirs(server, tmp_path, lambda: "cred", in_use=lambda: set(in_use),
                          limits=CacheLimits(max_bytes=350, min_age_s=0))
    a, b, c, d, e = (_blob(i) for i in range(5))
    in_use.add(a)  # an attempt launched here names it (the oldest)
    for digest in (a, b, c):
        cache.fetch(digest)
    assert _held(tmp_path) == {a, b, c}  # 300 bytes: under the limit
    cache.fetch(b)  # a launch from the cached copy: b is now more recently used than c
    cache.fetch(d)  # 400 bytes: the least recently used not in use goes (c, not a, not b)
    assert _held(tmp_path) == {a, b, d}
    in_use.clear()
    cache.fetch(e)  # nothing protects a now: the oldest goes
    assert _held(tmp_path) == {b, d, e}
