#!/usr/bin/env python3
"""A small, deterministic training job that honours corral's preemption contract.

Each worker of the gang fits a linear model to its own shard of synthetic data with minibatch
SGD (numpy only, no BLAS in the update, so every run computes bit-identical numbers). It

- checkpoints every ``--checkpoint-every`` steps, atomically (a hidden temp file, then a
  rename), into ``CORRAL_CHECKPOINT_DIR`` as ``ckpt-<step>-w<worker>.npz``: corral's naming
  convention, the step first, so that corral's ``CORRAL_RESUME_FROM`` names the latest step;
- on SIGTERM finishes the step it is in, checkpoints if the deadline in
  ``CORRAL_PREEMPT_DEADLINE_FILE`` leaves time, and exits 0 (corral reports it "stopped");
- resumes when ``CORRAL_RESUME_FROM`` is set (corral sets it to the newest checkpoint in the
  directory, "" when there is none): from the latest step, as the worker starts, that *every*
  worker of the gang has checkpointed in its directory, so the gang restarts from one
  consistent point (a worker killed mid-interval may lag behind the others). By hand it may
  also name a directory. Where the control plane cannot see the directory (Kubernetes volumes),
  corral leaves it "" and this job starts over;
- writes ``result-w<i>.json`` (weights and their SHA-256) when it is done: a run interrupted
  any number of times ends with exactly the result of a run that never was.

Because step s draws its minibatch from a generator seeded with (seed, worker, s), resuming at
step s needs only the weights: no generator state is saved.

It also appends one JSON line per event to ``events-w<i>.jsonl`` in the checkpoint dir (start,
resume, checkpoint, step, done, with wall-clock times and the attempt), which
``bench/recovery.py`` reads to measure lost work.

Run it by hand (no corral): ``python examples/train_ckpt.py --checkpoint-dir /tmp/ck``.
Under corral: ``command: [python, examples/train_ckpt.py, --steps, "200"]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np

FEATURES = 8
BATCH = 32
SHARD_ROWS = 512
KEEP_CHECKPOINTS = 3  # per worker, at least (see prune)
_CKPT = re.compile(r"ckpt-(\d{8})-w(\d+)\.npz")


class Job:
    """Where this worker stands: its identity (from corral's environment) and its files."""

    def __init__(self, args: argparse.Namespace) -> None:
        env = os.environ
        self.worker = int(env.get("CORRAL_WORKER_INDEX", "0"))
        self.workers = int(env.get("CORRAL_WORKERS", "1"))
        self.attempt = int(env.get("CORRAL_ATTEMPT", "0"))
        self.restarts = int(env.get("CORRAL_RESTART_COUNT", "0"))
        self.ckpt_dir = Path(env.get("CORRAL_CHECKPOINT_DIR") or args.checkpoint_dir or ".")
        self.resume_from = env.get("CORRAL_RESUME_FROM", "")
        self.deadline_file = env.get("CORRAL_PREEMPT_DEADLINE_FILE", "")
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.events = self.ckpt_dir / f"events-w{self.worker}.jsonl"
        self.stop_requested = False

    def log(self, event: str, step: int, **extra: object) -> None:
        line = {"event": event, "step": step, "t": time.time(), "attempt": self.attempt,
                "restarts": self.restarts, "worker": self.worker, **extra}
        with open(self.events, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def seconds_left(self) -> float:
        """Until the preemption deadline; infinite when no stop was requested."""
        try:
            return float(Path(self.deadline_file).read_text().strip()) - time.time()
        except (OSError, ValueError):
            return float("inf")


def shard(seed: int, worker: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, worker, 2**31 - 1])
    x = rng.standard_normal((SHARD_ROWS, FEATURES))
    true_w = rng.standard_normal(FEATURES)
    y = (x * true_w).sum(axis=1) + 0.01 * rng.standard_normal(SHARD_ROWS)
    return x, y


def sgd_step(w: np.ndarray, x: np.ndarray, y: np.ndarray, seed: int, worker: int, step: int,
             lr: float) -> np.ndarray:
    rows = np.random.default_rng([seed, worker, step]).integers(0, len(y), BATCH)
    xb, yb = x[rows], y[rows]
    err = (xb * w).sum(axis=1) - yb  # elementwise products: no BLAS, same bits every run
    grad = (xb * err[:, None]).sum(axis=0) * (2.0 / BATCH)
    return w - lr * grad


def save_checkpoint(job: Job, step: int, w: np.ndarray) -> Path:
    """Write atomically (temp file, fsync, rename) so a kill never leaves half a checkpoint."""
    path = job.ckpt_dir / checkpoint_name(step, job.worker)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, w=w, step=np.int64(step))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    prune(job)
    job.log("checkpoint", step)
    return path


def checkpoint_name(step: int, worker: int) -> str:
    return f"ckpt-{step:08d}-w{worker}.npz"


def prune(job: Job) -> None:
    """Delete this worker's checkpoints older than the gang's latest common step, keeping at
    least KEEP_CHECKPOINTS: a peer that died long ago still needs this worker's copy of the step
    the gang will resume from."""
    everyone = set(range(job.workers))
    common = [s for s, who in checkpoints(job.ckpt_dir).items() if everyone <= who]
    floor = max(common, default=0)
    mine = sorted(job.ckpt_dir.glob(f"ckpt-*-w{job.worker}.npz"))  # zero-padded: step order
    for old in mine[:-KEEP_CHECKPOINTS]:
        m = _CKPT.fullmatch(old.name)
        if m and int(m.group(1)) < floor:
            old.unlink(missing_ok=True)


def checkpoints(directory: Path) -> dict[int, set[int]]:
    """Step -> the workers that have a checkpoint of it."""
    found: dict[int, set[int]] = {}
    for p in directory.glob("ckpt-*-w*.npz"):
        m = _CKPT.fullmatch(p.name)
        if m:
            found.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    return found


def resume_point(job: Job) -> Path | None:
    """This worker's checkpoint to resume from, None for a fresh start.

    CORRAL_RESUME_FROM names the newest checkpoint corral saw when it launched this attempt (""
    for none): the latest step of whichever worker got furthest. The gang resumes from the
    latest step every worker has saved, read when this worker starts: example, w0 saved steps
    10 and 20, w1 only 10 (it died first); corral names ckpt-00000020-w0.npz, and both workers
    resume from step 10. A step saved after corral looked counts too: on Slurm the old job can
    keep saving until it is fenced, after the new attempt was submitted.
    """
    if not job.resume_from:
        return None
    source = Path(job.resume_from)
    if not source.is_dir():
        if _CKPT.fullmatch(source.name) is None:
            return None  # not one of this job's checkpoints: start over
        source = source.parent
    everyone = set(range(job.workers))
    common = [s for s, who in checkpoints(source).items() if everyone <= who]
    if not common:
        return None
    return source / checkpoint_name(max(common), job.worker)


def train(args: argparse.Namespace, job: Job) -> dict[str, object]:
    x, y = shard(args.seed, job.worker)
    w, start = np.zeros(FEATURES), 0
    point = resume_point(job)
    if point is not None:
        with np.load(point) as data:
            w, start = data["w"].copy(), int(data["step"])
        job.log("resume", start, source=str(point))
        print(f"worker {job.worker}: resumed from step {start} ({point.name})", flush=True)
    else:
        job.log("start", 0)
    for step in range(start, args.steps):
        if args.crash_at_step is not None and step == args.crash_at_step and job.restarts == 0:
            crash(job, step, args.checkpoint_every)
        w = sgd_step(w, x, y, args.seed, job.worker, step, args.lr)
        time.sleep(args.step_seconds)  # stands in for real work, so there is work to lose
        done = step + 1
        job.log("step", done)
        if job.stop_requested:
            return preempted(job, done, w)
        if done % args.checkpoint_every == 0 and done < args.steps:
            save_checkpoint(job, done, w)
    return finish(job, args.steps, w)


def crash(job: Job, step: int, every: int) -> None:
    """Exit 3 at `step`, once every worker has saved the gang's last checkpoint before it (or
    after 60 s, or when asked to stop): the crash a restart is tried on, with a common step to
    resume from whatever the workers' skew (a slow worker had not saved it when a fast one
    crashed, on a loaded machine)."""
    last, everyone = (step - 1) // every * every, set(range(job.workers))
    waited_until = time.monotonic() + 60.0
    while (last > 0 and not everyone <= checkpoints(job.ckpt_dir).get(last, set())
           and not job.stop_requested and time.monotonic() < waited_until):
        time.sleep(0.01)
    print(f"worker {job.worker}: crashing at step {step} as asked", flush=True)
    sys.exit(3)


def preempted(job: Job, step: int, w: np.ndarray) -> dict[str, object]:
    # Saving takes milliseconds here; a real job would compare its own save time.
    if job.seconds_left() > 0.05:
        save_checkpoint(job, step, w)
        print(f"worker {job.worker}: stop requested; checkpointed step {step}", flush=True)
    else:
        print(f"worker {job.worker}: stop requested; no time left to checkpoint", flush=True)
    sys.exit(0)


def finish(job: Job, steps: int, w: np.ndarray) -> dict[str, object]:
    result = {"worker": job.worker, "steps": steps, "w": [float(v) for v in w],
              "sha256": hashlib.sha256(w.tobytes()).hexdigest()}
    path = job.ckpt_dir / f"result-w{job.worker}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, sort_keys=True))
    os.replace(tmp, path)
    job.log("done", steps)
    print(f"RESULT {json.dumps(result, sort_keys=True)}", flush=True)
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--step-seconds", type=float, default=0.05)
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--checkpoint-dir", default=None,
                   help="used only when CORRAL_CHECKPOINT_DIR is not set")
    p.add_argument("--crash-at-step", type=int, default=None,
                   help="exit 3 at this step on the first launch (to try restarts), once every "
                        "worker has saved the checkpoint before it")
    args = p.parse_args(argv)
    if args.steps < 1 or args.checkpoint_every < 1:
        p.error("--steps and --checkpoint-every must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    job = Job(args)

    def on_sigterm(signum: int, frame: object) -> None:
        job.stop_requested = True  # acted upon at the end of the current step

    signal.signal(signal.SIGTERM, on_sigterm)
    train(args, job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
