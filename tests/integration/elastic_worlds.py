"""What the real-engine elastic tests share (test_elastic_local, _slurm, _ray): the worker each
member runs, and the worlds read back from the lines its workers write.

Each worker appends "generation world_size global_rank world_file" to $OUT and waits for
SIGTERM (a real job checkpoints there); if a file `fail-<its workload id>` appears beside $OUT,
it removes it and exits 3, once (the tests that crash a member on purpose)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from corral.control import elastic as E
from corral.store import Store
from corral.store import workloads as W

WORKER = textwrap.dedent("""
    import os, signal, sys, time
    e = os.environ
    rank = int(e["CORRAL_RANK_OFFSET"]) + int(e["CORRAL_WORKER_INDEX"])
    with open(e["OUT"], "a") as f:
        f.write(f"{e['CORRAL_ELASTIC_GENERATION']} {e['CORRAL_WORLD_SIZE']} {rank} "
                f"{e['CORRAL_ELASTIC_WORLD_FILE']}\\n")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a real job checkpoints here
    fail = os.path.join(os.path.dirname(e["OUT"]), "fail-" + e["CORRAL_WORKLOAD_ID"])
    while True:
        if os.path.exists(fail):  # the test asks this member to crash, once
            os.remove(fail)
            sys.exit(3)
        time.sleep(0.2)
""")


def worlds(out: Path) -> dict[int, tuple[int, list[int]]]:
    """generation -> (world size, ranks seen), from the workers' lines."""
    seen: dict[int, tuple[int, list[int]]] = {}
    for line in out.read_text().splitlines() if out.exists() else []:
        gen, size, rank = (int(x) for x in line.split()[:3])
        seen.setdefault(gen, (size, []))[1].append(rank)
    return seen


def whole(out: Path, size: int) -> bool:
    """Whether every rank of the newest world wrote its line, and that world is of `size`."""
    seen = worlds(out)
    if not seen:
        return False
    last, ranks = seen[max(seen)]
    return last == size and sorted(ranks) == list(range(size))


def full(out: Path, size: int) -> bool:
    """Whether every rank of some world of `size` wrote its line (not only the newest)."""
    return any(s == size and sorted(r) == list(range(size)) for s, r in worlds(out).values())


def newest_generation(out: Path) -> int:
    return max(worlds(out), default=0)


def recorded_sizes(store: Store, job: str) -> list[tuple[float, int]]:
    """(when, size) of each started world the control plane recorded for `job`."""
    with store.read() as c:
        return [(e.at, int(e.data["world_size"])) for e in W.list_events(c, workload_id=job)
                if e.reason == E.ELASTIC_WORLD and e.data.get("started", True)]
