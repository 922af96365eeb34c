"""Slurm alone vs corral driving the same Slurm: jobs/s, side by side, in one run.

Starts a real Slurm on this host (`corral.testing.slurm.SlurmCluster`: slurmctld and `--nodes`
slurmd with fake GPUs), then, on the same cluster, for each size in `--jobs` and each of
`--repeats` rounds, with the same jobs (one-GPU jobs running `true`):

1. Slurm alone: one `sbatch --array` of them (Slurm's fastest submission path), timed from the
   submission until the queue is empty again;
2. Slurm alone, each job wrapped in corral's worker supervisor (`local_runner`, what every
   corral worker runs under Slurm for the preemption contract): the same array, so the
   difference from row 1 is the supervisor's cost and the rest of corral's gap is the control
   plane's;
3. corral: the same number of one-GPU workloads stored in a fresh SQLite store, the control loop
   run in-process (`SlurmBackend`, no accounting) until every workload has succeeded, timed
   from the first step (`engine_loop.run_until_done`, shared with `ray_launch.py`): by default
   `ControlLoop.run` with `corral up`'s settings (a step soon after a job end, at most once per
   `coalesce_s`, else every `interval_s`; `corral.control.wake`); `--interval S` steps it from
   the bench instead, S between step starts (0 = back to back, its default before the wake).

Row 3 runs `SlurmBackend` with its defaults, as `corral up --backend slurm` does: since issue
16's last pass, `DEFAULT_WARM_SLOTS` spare pilots per node and shape (`corral.backends.
slurm_pilot`: single workers handed to pilot jobs queued on their node ahead of the work) with
reuse; the pilots it leaves idle are drained (not timed) before the next row. `--off-row` runs
it again with warm slots off (`warm_slots=0`: one Slurm job, an array task, per worker), in
the same round: `warm_off`. `--warm-slots N` runs it again with `warm_slots=N`: `warm`.
Every corral row records its workloads' final states (`states`) and launches (`launched`).

`--pilot-reuse-s S` (default 60) is the warm row's `pilot_reuse_s` (a pilot whose worker ended
takes the next one queued on its node and shape, no new Slurm job); `--warm-no-reuse` runs the
warm row again with 0 (one worker a pilot, as before), in the same round: `warm_no_reuse`.

`--old-runner FILE` (a former `local_runner.py`, e.g. from `git show REV:...`) runs rows 2 and 3
again with that supervisor, in the same round: before and after on the same cluster and load.

Prints one JSON line per (size, round) with the jobs/s of each, the ratios (the issue's target:
corral >= 0.8x Slurm alone), corral's seconds per loop stage (wall), the CPU seconds corral's
process used (`corral_cpu_s`), each row's CPU a job split into Slurm's daemons, this process and
its Slurm client commands (`cpu_ms_per_job`, `cpu_now`), and the machine's load; with `--timeline`, where a GPU slot's
cycle goes between one job's end and the next one's start (`timeline`).

    .venv/bin/python bench/slurm_launch.py [--nodes 4] [--jobs 200 1000] [--repeats 2]
        [--old-runner /tmp/local_runner_old.py] [--timeline] [--off-row] [--warm-slots 8]
        [--pilot-reuse-s 60] [--warm-no-reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine_loop import run_until_done  # type: ignore[import-not-found]  # bench/

from corral.backends import local_runner
from corral.backends.slurm import DEFAULT_WARM_SLOTS, SlurmBackend
from corral.testing.daemons import pids_with_env
from corral.testing.slurm import MARKER_ENV, SlurmCluster
from corral.testing.slurmconf import SlurmSettings

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_now(cluster: SlurmCluster) -> dict[str, float]:
    """CPU seconds used so far: Slurm's daemons (slurmctld, slurmd, munged, with what they
    reaped: each job's slurmstepd and the job itself), this process, and its reaped children
    (the Slurm client commands it ran: sbatch, squeue, scontrol). On a 2-core machine that
    every row shares, what a row costs in CPU is what it takes from the others."""
    daemons = 0
    for pid in pids_with_env(MARKER_ENV, str(cluster.root)):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 after the name
        daemons += sum(int(x) for x in fields[11:15])
    t = os.times()
    return {"slurm": daemons / _TICK, "bench": t.user + t.system,
            "clients": t.children_user + t.children_system}


def cpu_since(cluster: SlurmCluster, before: dict[str, float], jobs: int) -> dict[str, float]:
    """`cpu_now` minus `before`, per job in ms (the daemons' figure misses a slurmstepd still
    alive at the end: none once the queue drained)."""
    now = cpu_now(cluster)
    per = {k: round(1000 * (now[k] - before[k]) / jobs, 1) for k in now}
    return {**per, "total": round(sum(per.values()), 1)}


def slurm_alone(cluster: SlurmCluster, jobs: int, out: Path) -> float:
    started = time.perf_counter()
    cluster.run("sbatch", "--parsable", f"--array=0-{jobs - 1}", "--gres=gpu:1", "--ntasks=1",
                f"--output={out}/alone-%A_%a.out", "--wrap=true")
    _drain(cluster)
    return time.perf_counter() - started


def slurm_alone_with_runner(cluster: SlurmCluster, jobs: int, out: Path,
                            runner: list[str] | None = None, tag: str = "runner") -> float:
    """Row 2: the same array, each task running `true` under corral's supervisor (`runner`:
    the command that starts it, by default the current one)."""
    records = out / f"alone-{tag}"
    records.mkdir(mode=0o777)
    task = f"{records}/$SLURM_ARRAY_TASK_ID"
    start = " ".join(runner or local_runner.runner_argv(sys.executable))
    wrap = (f'mkdir -p {task} && exec {start} '
            f'--record-dir {task} --deadline-file {records}/deadline --cwd "" -- true')
    started = time.perf_counter()
    cluster.run("sbatch", "--parsable", f"--array=0-{jobs - 1}", "--gres=gpu:1", "--ntasks=1",
                f"--output={out}/{tag}-%A_%a.out", f"--wrap={wrap}")
    _drain(cluster)
    elapsed = time.perf_counter() - started
    missing = [i for i in range(jobs) if not (records / str(i) / "exit.json").exists()]
    if missing:  # what Slurm and the task said, so that a rare one can be told apart
        first = missing[0]
        said = sorted(out.glob(f"{tag}-*_{first}.out"))
        raise RuntimeError(
            f"{len(missing)} of {jobs} supervised jobs wrote no exit record (tasks "
            f"{missing[:10]}); task {first}'s records: "
            f"{sorted(p.name for p in (records / str(first)).glob('*'))}, its output: "
            f"{said[0].read_text()[-2000:] if said else None!r}")
    shutil.rmtree(records)
    return elapsed


def _drain(cluster: SlurmCluster, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cluster.run("squeue", "-h", "-o", "%i").stdout.strip():
            return
        time.sleep(0.05)
    raise TimeoutError("Slurm did not drain its queue")


class _TimedSlurm(SlurmBackend):
    """`SlurmBackend` noting when each ``sbatch`` returned and the job name it submitted
    (`--timeline`: how long Slurm took from an accepted submission to the task's start)."""

    sbatch_ends: dict[str, float]

    def _slurm(self, command: str, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
        done = super()._slurm(command, *args, check=check)
        if command == "sbatch":
            name = next((a.split("=", 1)[1] for a in args if a.startswith("--job-name=")), "")
            self.sbatch_ends[name] = time.time()
        return done


def timeline(backend: _TimedSlurm) -> dict[str, float | int]:
    """Medians, in seconds, of where a slot's cycle goes: a node's last worker end (its
    runner's exit record) -> corral's record of the next attempt there (the loop's reaction),
    that record -> the task's runner started, of which an accepted ``sbatch`` -> the runner
    started is Slurm's own start of a new submission; and the worker's own life, its runner
    started -> its exit record (`runner_s`: the supervisor's start, `true`, its records), which
    Slurm alone's bare `true` does not pay. An attempt with no exit record (a job Slurm
    failed to start, relaunched as the next attempt) is counted, not timed."""
    rows = []
    unrecorded = 0  # attempts whose runner wrote no exit record (Slurm failed to start one)
    for launch in backend.records.root.glob("*/*/launch.json"):
        rec = json.loads(launch.read_text())
        wdir = launch.parent / "worker-0"
        try:
            end = json.loads((wdir / "exit.json").read_text())["finished_at"]
        except FileNotFoundError:
            unrecorded += 1
            continue
        rows.append((rec["launched_at"], (wdir / "runner.json").stat().st_mtime, end,
                     rec["spec"]["assignments"][0]["node_id"], rec["engine"].get("array", {})))
    ends: dict[str, list[float]] = {}
    for _, _, end, node, _ in rows:
        ends.setdefault(node, []).append(end)
    react = [at - max(e) for at, _, _, node, _ in rows
             if (e := [x for x in ends[node] if x <= at])]
    submitted = [started - backend.sbatch_ends[a["name"]] for _, started, _, _, a in rows
                 if a.get("name") in backend.sbatch_ends]
    med = statistics.median
    return {"last_end_to_next_record_s": round(med(react), 3) if react else -1.0,
            "record_to_runner_s": round(med([r[1] - r[0] for r in rows]), 3),
            "sbatch_to_runner_s": round(med(submitted), 3) if submitted else -1.0,
            "runner_s": round(med([r[2] - r[1] for r in rows]), 3),
            "attempts_without_exit_record": unrecorded}


def corral_on_slurm(cluster: SlurmCluster, jobs: int, work: Path, interval: float | None = None,
                    runner: list[str] | None = None, with_timeline: bool = False,
                    warm_slots: int | None = None, pilot_reuse_s: float | None = None
                    ) -> tuple[float, dict[str, Any]]:
    """Row 3: corral's loop on `SlurmBackend` (its defaults, as `corral up`, where `warm_slots`
    or `pilot_reuse_s` is None); `runner`: the supervisor's start command in the batch scripts
    (a bench-only switch, to compare supervisors in one run), else the current."""
    given = {k: v for k, v in (("warm_slots", warm_slots), ("pilot_reuse_s", pilot_reuse_s))
             if v is not None}
    backend = _TimedSlurm(work / "slurm-work", env=cluster.env, **given)  # type: ignore[arg-type]
    backend.sbatch_ends = {}
    current = local_runner.runner_argv
    if runner is not None:
        local_runner.runner_argv = lambda python: list(runner)  # type: ignore[assignment]
    cpu = time.process_time()  # this process: the loop and its launch and ask threads
    try:
        elapsed, detail = run_until_done(backend, work, jobs, cpu=1, provider="slurm",
                                         interval=interval, timeout=900)
        # CPU seconds, not wall: on a shared 2-core machine the stages' wall time is mostly
        # waiting for a core, so what corral costs is the CPU it asks for
        detail["corral_cpu_s"] = round(time.process_time() - cpu, 2)
        if with_timeline:
            detail["timeline"] = timeline(backend)
        return elapsed, detail
    finally:
        local_runner.runner_argv = current  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--gpus", type=int, default=8, help="GPUs per slurmd")
    ap.add_argument("--jobs", type=int, nargs="+", default=[200])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--interval", type=float, default=None,
                    help="seconds between control-loop step starts (0: as fast as it goes); "
                    "default: ControlLoop.run with corral up's settings (on events, "
                    "coalesced; corral.control.wake)")
    ap.add_argument("--no-runner-row", action="store_true", help="skip row 2")
    ap.add_argument("--timeline", action="store_true",
                    help="row 3 also says where a slot's cycle goes (`timeline`)")
    ap.add_argument("--off-row", action="store_true",
                    help="row 3 again with warm slots off (warm_slots=0), in the same round")
    ap.add_argument("--warm-slots", type=int, default=0,
                    help="row 3 again with SlurmBackend(warm_slots=N) (0: not run)")
    ap.add_argument("--pilot-reuse-s", type=float, default=60.0,
                    help="the warm row's SlurmBackend(pilot_reuse_s) (0: one worker a pilot)")
    ap.add_argument("--warm-no-reuse", action="store_true",
                    help="with --warm-slots, the warm row again with pilot_reuse_s=0 (one "
                    "worker a pilot, as before reuse), in the same round")
    ap.add_argument("--old-runner", type=Path, default=None,
                    help="a former local_runner.py: rows 2 and 3 again with it (python -I FILE)")
    args = ap.parse_args()
    settings = SlurmSettings(gpus_per_node=args.gpus, shards_per_gpu=0,
                             cpus_per_node=args.gpus, memory_mb=args.gpus * 1024)
    with SlurmCluster(args.nodes, settings) as cluster:
        for jobs in args.jobs:
            for round_ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    work = Path(tmp)
                    os.chmod(work, 0o755)  # slurmd's jobs write the supervised rows' records
                    print(json.dumps(one_row(cluster, jobs, round_, work, args)), flush=True)


def one_row(cluster: SlurmCluster, jobs: int, round_: int, work: Path,
            args: argparse.Namespace) -> dict[str, Any]:
    cpu = cpu_now(cluster)
    alone = slurm_alone(cluster, jobs, work)
    cpu_ms = {"alone": cpu_since(cluster, cpu, jobs)}
    old = None if args.old_runner is None else [sys.executable, "-I", str(args.old_runner)]
    runner = None if args.no_runner_row else slurm_alone_with_runner(cluster, jobs, work)
    row: dict[str, Any] = {
        "bench": "slurm_launch", "nodes": args.nodes, "gpus_per_node": args.gpus,
        "jobs": jobs, "round": round_, "interval_s": args.interval,
        "slurm_alone_jobs_per_s": round(jobs / alone, 1),
    }
    if old is not None:
        old_runner = None if args.no_runner_row else slurm_alone_with_runner(
            cluster, jobs, work, old, "old-runner")
        (work / "old").mkdir()
        old_corral, old_detail = corral_on_slurm(cluster, jobs, work / "old", args.interval, old)
        _drain(cluster)
        row["old_runner"] = {
            "corral_jobs_per_s": round(jobs / old_corral, 1),
            "ratio": round(alone / old_corral, 2), "corral_s": round(old_corral, 2),
            "corral_stage_s": old_detail["corral_stage_s"],
            **({} if old_runner is None else {
                "slurm_alone_supervised_jobs_per_s": round(jobs / old_runner, 1)})}
    cpu = cpu_now(cluster)
    corral, detail = corral_on_slurm(cluster, jobs, work, args.interval,
                                     with_timeline=args.timeline)
    cpu_ms["corral"] = cpu_since(cluster, cpu, jobs)
    _drain(cluster)  # the pilots the default left idle end within their idle time
    row |= {"corral_jobs_per_s": round(jobs / corral, 1), "ratio": round(alone / corral, 2),
            "default_warm_slots": DEFAULT_WARM_SLOTS}
    if args.off_row:
        row["warm_off"] = warm_row(cluster, jobs, work / "off", alone, cpu_ms, "warm_off", args,
                                   None, 0)[1]
    if args.warm_slots > 0:
        warm = warm_row(cluster, jobs, work / "warm", alone, cpu_ms, "warm", args,
                        args.pilot_reuse_s, args.warm_slots)
        row["warm"] = warm[1]
        if args.warm_no_reuse:
            row["warm_no_reuse"] = warm_row(cluster, jobs, work / "warm-no-reuse", alone, cpu_ms,
                                            "warm_no_reuse", args, 0.0, args.warm_slots)[1]
    if runner is not None:
        row["slurm_alone_supervised_jobs_per_s"] = round(jobs / runner, 1)
        row["ratio_to_supervised"] = round(runner / corral, 2)
        if "warm" in row:
            row["warm"]["ratio_warm_to_supervised"] = round(runner / warm[0], 2)
    return {**row, "slurm_alone_s": round(alone, 2), "corral_s": round(corral, 2), **detail,
            "cpu_ms_per_job": cpu_ms,
            "machine": {"nproc": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 1)}}


def warm_row(cluster: SlurmCluster, jobs: int, work: Path, alone: float,
             cpu_ms: dict[str, Any], name: str, args: argparse.Namespace,
             reuse_s: float | None, warm_slots: int) -> tuple[float, dict[str, Any]]:
    """Row 3 with `warm_slots` spare pilots (0: off), reused for `reuse_s` (None: the
    backend's default): its seconds and its part of the JSON line; the pilots left idle
    drained (not timed) after it."""
    work.mkdir()
    cpu = cpu_now(cluster)
    warm, detail = corral_on_slurm(cluster, jobs, work, args.interval,
                                   with_timeline=args.timeline, warm_slots=warm_slots,
                                   pilot_reuse_s=reuse_s)
    cpu_ms[name] = cpu_since(cluster, cpu, jobs)  # before the idle pilots' drain
    _drain(cluster)  # the pilots left idle end within their idle time: not corral's jobs
    return warm, {"warm_slots": warm_slots, "pilot_reuse_s": reuse_s,
                  "corral_warm_jobs_per_s": round(jobs / warm, 1),
                  "ratio_warm": round(alone / warm, 2), "corral_s": round(warm, 2),
                  "corral_cpu_s": detail["corral_cpu_s"],
                  "states": detail["states"], "launched": detail["launched"],
                  "corral_stage_s": detail["corral_stage_s"],
                  **({"timeline": detail["timeline"]} if args.timeline else {})}


if __name__ == "__main__":
    main()
