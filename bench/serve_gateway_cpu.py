"""The gateway's CPU per proxied request, in one process, for an old-vs-new pair under
farm-bench: a raw asyncio HTTP replica (the same code whatever the corral version) and the
gateway app driven through httpx.ASGITransport, N GETs one at a time (or, with a second
argument BYTES, N POSTs of a BYTES-long JSON body: the request-body path, where the gateway holds
the body to be able to retry). PYTHONPATH picks the corral version (a worktree's src/):

    farm-bench -n 4 --vs "env PYTHONPATH=OLD/src python bench/serve_gateway_cpu.py 3000" \
        -- env PYTHONPATH=NEW/src python bench/serve_gateway_cpu.py 3000
"""

import asyncio
import contextlib
import random
import sys

import httpx

from corral.gateway import ReplicaState, RouteTable, create_gateway_app

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
POST_BYTES = int(sys.argv[2]) if len(sys.argv) > 2 else 0
BODY = b'{"ok": true}'
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(BODY), BODY))

async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # the client's connection closing (or the run ending) is the end of a session, not an error
    with contextlib.suppress(asyncio.CancelledError, ConnectionError,
                             asyncio.IncompleteReadError):
        await _serve(reader, writer)

async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
        if not head:
            break
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        if length:
            await reader.readexactly(length)
        writer.write(RESP)
        await writer.drain()
    writer.close()

async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    table = RouteTable()
    table.set_service("toy")
    table.set_replica("toy", "a", f"http://127.0.0.1:{port}", ReplicaState.READY)
    app = create_gateway_app(table, rng=random.Random(1))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gw") as c:
        body = b'{"prompt": "' + b"x" * max(POST_BYTES - 14, 0) + b'"}'
        for _ in range(N):
            if POST_BYTES:
                r = await c.post("/serve/toy/x", content=body,
                                 headers={"content-type": "application/json"})
            else:
                r = await c.get("/serve/toy/x")
            assert r.status_code == 200, r.text
    await app.state.gateway.aclose()
    server.close()

if __name__ == "__main__":
    asyncio.run(main())
