"""Run the gateway alone over a static route file, until a control plane feeds it:

    python -m corral.gateway --routes routes.yaml --port 8080 [--probe]

    services:
      toy:
        token_sha256: null            # or the hex SHA-256 of the bearer token
        replicas: {r0: "http://127.0.0.1:8001", r1: "http://127.0.0.1:8002"}

Replicas start ready, unless --probe: then they start `starting` and the prober (/healthz by
default) makes them ready.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from corral.gateway.app import create_gateway_app
from corral.gateway.limits import GatewayLimits
from corral.gateway.probes import Prober, ProbeSpec
from corral.gateway.routes import ReplicaState, RouteTable, ServiceAuth


def load_routes(path: Path, state: ReplicaState) -> RouteTable:
    body: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    table = RouteTable()
    for name, service in (body.get("services") or {}).items():
        table.set_service(name, ServiceAuth(service.get("token_sha256")))
        for replica_id, url in (service.get("replicas") or {}).items():
            table.set_replica(name, str(replica_id), url, state)
    return table


async def serve(args: argparse.Namespace) -> None:
    table = load_routes(args.routes, ReplicaState.STARTING if args.probe else ReplicaState.READY)
    app = create_gateway_app(table, GatewayLimits())
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning", timeout_graceful_shutdown=30))
    if not args.probe:
        await server.serve()
        return
    async with httpx.AsyncClient() as client:
        probing = asyncio.create_task(Prober(table, client, ProbeSpec()).run())
        try:
            await server.serve()
        finally:
            probing.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m corral.gateway",
                                     description="corral's serving gateway over a route file")
    parser.add_argument("--routes", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--probe", action="store_true", help="probe replicas before traffic")
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
