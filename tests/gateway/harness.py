"""Real servers for the gateway's tests: uvicorn on ephemeral ports in the test's own event
loop (replicas run the example model server), and the gateway in front of them."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
#: a guard so a broken test fails instead of hanging; no test asserts on time
GUARD_S = 60.0


def _load_model_server() -> ModuleType:
    spec = importlib.util.spec_from_file_location("model_server",
                                                  ROOT / "examples/serve/model_server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_server"] = module
    spec.loader.exec_module(module)
    return module


model_server = _load_model_server()


def run(coro: Coroutine[Any, Any, T]) -> T:
    async def guarded() -> T:
        return await asyncio.wait_for(coro, GUARD_S)
    return asyncio.run(guarded())


def closed_port() -> int:
    """A port nothing listens on (bound, then released): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`app` under a real uvicorn on 127.0.0.1:<ephemeral>; yields its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def replica(replica_id: str, **state: Any) -> AsyncIterator[tuple[str, Any]]:
    """An example model server; yields (URL, its ModelState)."""
    model = model_server.ModelState(replica_id, **state)
    async with serving(model_server.create_app(model)) as url:
        yield url, model


@asynccontextmanager
async def replica_process(replica_id: str, token_delay_s: float
                          ) -> AsyncIterator[tuple[str, int, Any]]:
    """The example model server in a process of its own (to be killed with SIGKILL); yields
    (URL, its pid, an async function: the requests it serves now, -1 when it does not answer)."""
    import subprocess

    import httpx

    port = closed_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "examples/serve/model_server.py"),
                                "--port", str(port), "--replica-id", replica_id,
                                "--token-delay", str(token_delay_s)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=5) as probe:
        async def in_flight() -> int:
            try:
                return int((await probe.get(f"{url}/healthz")).json()["in_flight"])
            except httpx.TransportError:
                return -1

        try:
            while await in_flight() < 0:  # the process is up
                await asyncio.sleep(0.02)
            yield url, process.pid, in_flight
        finally:
            process.kill()
            process.wait()


async def until(predicate: Any, what: str) -> None:
    """Yield to the loop until `predicate()` holds (the guard of `run` bounds it)."""
    while not predicate():
        await asyncio.sleep(0.001)



def completion(prompt: str = "hello world", max_tokens: int = 4,
               stream: bool = False) -> dict[str, Any]:
    return {"prompt": prompt, "max_tokens": max_tokens, "stream": stream}


async def read_cut_stream(client: Any) -> Exception | None:
    """Read a streamed completion through the gateway to its end: the HTTP error the client
    raised if the stream was cut before its end, else None."""
    import httpx

    try:
        async with client.stream("POST", "/serve/toy/v1/completions",
                                 json=completion(stream=True)) as resp:
            async for _ in resp.aiter_raw():
                pass
    except httpx.HTTPError as exc:
        return exc
    return None




@asynccontextmanager
async def gateway(table: Any, limits: Any = None, seed: int = 7) -> AsyncIterator[Any]:
    """The gateway app over `table` under uvicorn; yields an httpx client whose base URL is
    the gateway (`.app_state` is the Gateway object)."""
    import random

    import httpx

    from corral.gateway import create_gateway_app

    app = create_gateway_app(table, limits, rng=random.Random(seed))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=None) as client:
        client.gateway = app.state.gateway  # type: ignore[attr-defined]
        yield client
