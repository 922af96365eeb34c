"""Write corral's finished work and its pool as the simulator's generic trace (corral.sim.generic):
nodes.csv and tasks.csv in the working directory. Run with the server and token `corral` uses
(or CORRAL_URL / CORRAL_TOKEN); an admin sees every queue's work.

    python docs/howto/export_history.py [--since-days 30]
"""

from __future__ import annotations

import argparse
import csv
import time

from corral.sdk import Client
from corral.sdk.models import Workload
from corral.spec.workload import WorkloadSpec  # corral[server] or corral[sim], as the simulator

ENDED = ["succeeded", "failed", "cancelled"]
NODE_COLUMNS = ["id", "gpus", "cpu_milli", "memory_mib", "gpu_model", "gpu_memory_mib",
                "price_per_gpu_hour", "capacity_kind", "region", "zone", "rack"]
TASK_COLUMNS = ["id", "submit_time", "gpus", "gpu_milli", "cpu_milli", "memory_mib", "duration",
                "workers", "gpu_models", "queue", "priority"]


def task_row(w: Workload, start: float) -> list[object]:
    # the spec as submitted ("500m", "64GiB"), read by the server's own model: milli-cores, MiB
    spec = WorkloadSpec.model_validate(w.spec)
    assert w.started_at is not None and w.finished_at is not None
    share = 0 < spec.gpus < 1  # a fraction of one device: gpus 1, gpu_milli the share
    return [w.id, round(w.submitted_at - start, 3), 1 if share else int(spec.gpus),
            round(spec.gpus * 1000) if share else 1000, spec.cpu, spec.memory,
            round(w.finished_at - w.started_at, 3), spec.workers, "|".join(spec.gpu_models),
            w.queue, spec.priority]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since-days", type=float, default=30.0)
    since = time.time() - parser.parse_args().since_days * 86400
    with Client.from_env() as c:
        nodes = c.nodes()
        work = [w for w in c.iter_workloads(state=ENDED)
                if w.started_at is not None and w.finished_at is not None
                and w.submitted_at >= since]
    if not work:
        raise SystemExit("no finished work in that window: nothing to replay")
    start = min(w.submitted_at for w in work)
    with open("nodes.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(NODE_COLUMNS)
        for n in nodes:
            out.writerow([n.id, n.gpu_count, n.cpu_milli, n.memory_mib, n.gpu_model,
                          n.gpu_memory_mib, n.price_per_gpu_hour, n.capacity_kind, n.region,
                          n.zone, n.rack])
    with open("tasks.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(TASK_COLUMNS)
        for w in sorted(work, key=lambda w: w.submitted_at):
            out.writerow(task_row(w, start))
    print(f"wrote nodes.csv ({len(nodes)} nodes) and tasks.csv ({len(work)} tasks)")


if __name__ == "__main__":
    main()
