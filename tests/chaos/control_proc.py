"""A corral control plane in a process of its own, for the crash tests (killed with SIGKILL by
PID, never by name):

    python control_proc.py --db URL --work DIR --checkpoints DIR slurm
    python control_proc.py --db URL --work DIR --checkpoints DIR ray --address HOST:PORT

It steps the control loop with node health every 0.1 s on the given engine until SIGTERM.
Slurm's client environment (SLURM_CONF) comes from this process's environment.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from corral.backends.base import Backend
from corral.control import ControlLoop, ControlSettings, Leadership
from corral.control.health import HealthMonitor
from corral.store import Store


def backend_for(args: argparse.Namespace) -> Backend:
    if args.engine == "slurm":
        from corral.backends.slurm import SlurmBackend

        return SlurmBackend(args.work)
    from corral.backends.ray import RayBackend

    return RayBackend(args.work, address=args.address, node_root=args.node_root)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--checkpoints", type=Path, required=True)
    p.add_argument("--address", default=None)
    p.add_argument("--node-root", default=None)
    p.add_argument("engine", choices=["slurm", "ray"])
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    store = Store(args.db)
    store.upgrade()
    backend = backend_for(args)
    settings = ControlSettings(checkpoint_root=args.checkpoints, stop_grace_s=5.0,
                               interval_s=0.1)
    loop = ControlLoop(store, backend, settings=settings, leadership=Leadership(store),
                       health=HealthMonitor(store, backend))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    loop.run(stop)


if __name__ == "__main__":
    main()
