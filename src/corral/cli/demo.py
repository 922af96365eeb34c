"""`corral up --demo`: a two-team story on the default 2 x 4 GPU pool that shows what corral is for.

The story (about two minutes; `corral top` in a second terminal shows it as it happens):

1. The demo creates two team queues through the API, team-a and team-b, each guaranteed 4 GPUs
   and allowed to borrow the whole pool (8).
2. team-a starts two preemptible training jobs of 4 GPUs each: it borrows all 8 GPUs.
3. team-b's work arrives: an eval job (3 GPUs), a notebook on half a GPU and a flaky job (half a
   GPU) that crashes once mid-run. team-b is under its guarantee, so corral reclaims GPUs that
   team-a borrowed: one training job is stopped (SIGTERM, it saves its step) and waits, with a
   reason `corral why` gives, until room frees; then it resumes from its checkpoint.
4. The flaky job exits 3 once; `restart_on: [{exit_code: [3]}]` restarts it and it resumes from
   its checkpoint too.
5. The pool is priced (a demo pool file, 2.00 per GPU-hour): `corral usage` shows GPU-hours and
   cost per team.

Every job is a CPU-only Python loop that prints one step per tick and saves the step in
CORRAL_CHECKPOINT_DIR (the contract of `corral.backends.environment`), so the demo runs on any
laptop. CORRAL_DEMO_STEP_S (default 1) sets the tick: the end-to-end test runs the same story
faster.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_POOL",
    "GUIDE",
    "TEAMS",
    "TEAM_QUOTA",
    "demo_pool_file",
    "step_seconds",
    "submit_demo",
    "team_a_workloads",
    "team_b_workloads",
]

TEAMS = ("team-a", "team-b")
TEAM_QUOTA = 4.0
PRICE = 2.0

# The default virtual pool (2 nodes x 4 GPUs, see corral.cli.server.virtual_inventory) with a
# price, so that money shows in `corral usage`. Written to the data dir and used by --demo when
# no --pool was given (examples/pool.yaml, used from the repository root, is far too big for a
# reclaim to happen).
DEMO_POOL = f"""\
# corral up --demo: the default 2 x 4 virtual GPU pool, priced so that `corral usage` shows cost
providers:
  - name: local
    capacity_kind: owned
    prices: {{virtual-gpu: {PRICE:.2f}}}   # per GPU-hour
    node_groups:
      - {{name: gpu, count: 2, gpu_model: virtual-gpu, gpus: 4, gpu_memory: 80GiB, cpu: 64,
         memory: 256GiB}}
"""

# One step per tick; the step is saved in the checkpoint dir, so any later attempt resumes from
# it. With a crash step, the first attempt to reach it exits 3 (an "application crash") and
# leaves a marker so that the restarted attempt goes on.
_SCRIPT = (
    "import os,sys,time,signal\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "n=int(sys.argv[1]); tick=float(sys.argv[2]); crash=int(sys.argv[3])\n"
    "ck=os.environ.get('CORRAL_CHECKPOINT_DIR','')\n"
    "p=os.path.join(ck,'step') if ck else ''\n"
    "start=int(open(p).read()) if p and os.path.exists(p) else 0\n"
    "wid=os.environ['CORRAL_WORKLOAD_ID']\n"
    "if start: print(f'{wid}: resumed from checkpoint at step {start}', flush=True)\n"
    "for i in range(start,n):\n"
    "    if crash and i==crash and ck and not os.path.exists(os.path.join(ck,'crashed')):\n"
    "        open(os.path.join(ck,'crashed'),'w').write('1')\n"
    "        print(f'{wid}: crashing at step {i} (demo)', flush=True); sys.exit(3)\n"
    "    print(f\"{wid} GPUs {os.environ.get('CUDA_VISIBLE_DEVICES','')}: step {i+1}/{n}\","
    " flush=True)\n"
    "    time.sleep(tick)\n"
    "    p and open(p,'w').write(str(i+1))\n")

GUIDE = """\
  demo: what to look at (run these in a second terminal):
    corral top                  team-a borrows the pool, then team-b reclaims its guarantee
    corral queues               guarantees (quota 4 each), use, borrowing
    corral ls -a                every job; one of team-a's is pending again after the reclaim
    corral why ID               the reclaimed job waits, and says why
    corral describe ID          its attempts: preempted (reclaim), then resumed
    corral logs ID              "resumed from checkpoint at step N" (the reclaimed and the flaky job)
    corral usage                GPU-hours and cost per team (the demo pool: 2.00 per GPU-hour)"""


def step_seconds() -> float:
    try:
        return max(0.05, float(os.environ.get("CORRAL_DEMO_STEP_S", "1")))
    except ValueError:
        return 1.0


def demo_pool_file(data_dir: Path) -> Path:
    """Write the priced demo pool into the data dir (each start: the file is the demo's own)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "demo-pool.yaml"
    path.write_text(DEMO_POOL)
    return path


def _job(name: str, queue: str, gpus: float, steps: int, tick: float, *, crash: int = 0,
         **extra: Any) -> dict[str, Any]:
    return {"name": name, "queue": queue, "gpus": gpus, "cpu": 0.5, "memory": "256MiB",
            "preemption_grace": "5s",
            "command": [sys.executable, "-c", _SCRIPT, str(steps), f"{tick:g}", str(crash)],
            **extra}


def team_a_workloads(tick: float) -> list[dict[str, Any]]:
    """Two preemptible 4-GPU trainings: team-a borrows the whole pool."""
    return [_job(f"a-train-{i}", "team-a", 4, 90, tick, preemptible=True) for i in (1, 2)]


def team_b_workloads(tick: float) -> list[dict[str, Any]]:
    """4 GPUs in all, team-b's guarantee: placing them reclaims what team-a borrowed."""
    return [
        _job("b-eval", "team-b", 3, 30, tick),
        _job("b-notebook", "team-b", 0.5, 30, tick, kind="interactive", ttl="5m"),
        _job("b-flaky", "team-b", 0.5, 20, tick, crash=6, restart_backoff="1s",
             restart_on=["node_failure", "preemption", {"exit_code": [3]}]),
    ]


def submit_demo(url: str, token: str, say: Callable[[str], None]) -> None:
    """Create the team queues, submit team-a's work, wait until it runs, submit team-b's."""
    from corral.sdk import Client, CorralError

    tick = step_seconds()
    with Client(url, token) as c:
        _wait_healthy(c)
        have = {q.name for q in c.queues()}
        for team in TEAMS:
            if team not in have:
                c.create_queue(team, quota_gpus=TEAM_QUOTA, limit_gpus=2 * TEAM_QUOTA)
        say(f"  demo: queues {', '.join(TEAMS)}: {TEAM_QUOTA:g} GPUs guaranteed each, "
            f"may borrow up to {2 * TEAM_QUOTA:g}")
        a_ids = _submit(c, team_a_workloads(tick), say)
        # team-b arrives once team-a holds the pool and has saved a few steps
        deadline = threading.Event()
        for _ in range(int(120 / 0.2)):
            try:
                if a_ids and all(c.get(i).state == "running" for i in a_ids):
                    break
            except CorralError:
                pass
            deadline.wait(0.2)
        deadline.wait(4 * tick)
        _submit(c, team_b_workloads(tick), say)
        say(GUIDE)


def _wait_healthy(c: Any) -> None:
    from corral.sdk import CorralError

    for _ in range(100):
        try:
            c.health()
            return
        except CorralError:
            threading.Event().wait(0.1)


def _submit(c: Any, specs: list[dict[str, Any]], say: Callable[[str], None]) -> list[str]:
    from corral.sdk import CorralError

    ids: list[str] = []
    for spec in specs:
        try:
            sub = c.submit(spec)
            ids += [w.id for w in sub.workloads]
            say(f"  demo: submitted {spec['name']} ({sub.group_id}) to {spec['queue']}")
        except CorralError as e:
            say(f"  demo: {spec['name']} refused: {e.message}")
    return ids
