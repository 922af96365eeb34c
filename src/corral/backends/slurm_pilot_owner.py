"""Whose pilot a Slurm job is, and the cancel of a former backend's pilots still pending.

A pilot job (`corral.backends.slurm_pilot`) is named for who submitted it:

    corral-pilot.<installation>.<generation>.<node>.<gres>

- the **installation** (`installation_id`): a random id kept in the backend's work dir
  (``<data dir>/slurm-work/installation-id``), made once and read by every later start, so
  stable per corral data directory and different for two corral servers sharing a cluster
  (the same data dir path on two hosts included);
- the **generation**: one backend instance (`Pilots.gen`, new at every start); its pilots take
  only its items.

One backend per work dir: a second one started while the first still runs adopts the first's
waiting items (`Pilots.adopt`) and cancels its pending pilots, leaving its queued workers short
of pilots until its next launch on their key (`Pilots.wanted` cannot see a scancel). `corral
up` runs one backend per data dir; two servers sharing a cluster each have their own.

Why (review's should-fix on 34ff961): after a restart the items no pilot took are renamed to
the new generation (`Pilots.adopt`), so the former generation's pilots take nothing; each one
Slurm still starts held a GPU for `pilot_idle_s` doing nothing, and a restart with many
(node, shape) pairs left dozens of them in the site's queue. The new backend cancels them
(`cancel_former_pilots`, on the asker's thread, after the adoption's renames):

- only **pending** jobs, by their array task ids (``squeue -r -t PENDING`` lists each pending
  task on its own line), and ``scancel --state=PENDING``: slurmctld checks the state again, so
  a task of the same array that started meanwhile, and so may run a worker it took, is left
  running (measured on the suite's Slurm 22.05: 4 running tasks, 2 pending, one scancel of all
  6 ids with the filter: the 4 still run);
- a pilot that starts between the listing and the cancel takes nothing: the renames came first,
  and it only takes items of its own generation;
- only this user's jobs (``--user``), named for this installation and another generation: never
  another installation's pilots, never this backend's own;
- running former pilots are left alone: one that runs a worker runs it to its end (the new
  backend follows that worker by its job id); one that runs none, or whose worker ended, finds
  no item of its generation and leaves after `pilot_idle_s` (2 s), as before. Pilots named
  before this change (``corral-pilot.<node>.<gres>``, no installation) cannot be told apart
  from another installation's, so they are not cancelled: they idle out as they did.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Final

from corral.backends.errors import BackendError, BackendUnavailable

if TYPE_CHECKING:
    from corral.backends.slurm import SlurmBackend

__all__ = ["INSTALLATION_FILE", "PILOT_PREFIX", "cancel_former_pilots", "former_pilot",
           "installation_id", "pilot_job_name"]

PILOT_PREFIX: Final = "corral-pilot."  # the pilots' job name, then installation, generation, key
INSTALLATION_FILE: Final = "installation-id"  # in the backend's work dir
_ID: Final = re.compile(r"[0-9a-f]{12}")
#: job ids per scancel: a restart with many former arrays stays within a command line
CANCEL_BATCH: Final = 500

log = logging.getLogger(__name__)


def installation_id(root: Path) -> str:
    """The id of the installation whose work dir is `root`, made on first use. Made by a link of
    a complete file: two backends starting at once on one work dir agree on the first id."""
    path = root / INSTALLATION_FILE
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{INSTALLATION_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_text(f"{secrets.token_hex(6)}\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another start made it first: its id is the one
        finally:
            tmp.unlink()
        found = path.read_text().strip()
    if not _ID.fullmatch(found):
        raise BackendError(f"{path} holds {found[:40]!r}, not an installation id (12 lowercase "
                           "hex digits): restore it, or delete it to make a new one (pilots "
                           "queued under the old id are then not cancelled at the next restart)")
    return found


def pilot_job_name(installation: str, gen: str, key: str) -> str:
    return f"{PILOT_PREFIX}{installation}.{gen}.{key}"


def former_pilot(name: str, installation: str, gen: str) -> bool:
    """A pilot of this installation submitted by another generation (a backend before)."""
    mine = f"{PILOT_PREFIX}{installation}."
    return name.startswith(mine) and name[len(mine):].split(".", 1)[0] != gen


def cancel_former_pilots(backend: SlurmBackend) -> list[str]:
    """scancel the pending pilots this installation's former backends submitted (module
    docstring); the task ids asked to be cancelled. Slurm unreachable: logged, none cancelled
    (they idle out as before); never raised, it runs on the asker's thread."""
    pilots = backend.pilots
    try:
        listed = backend._slurm("squeue", "-h", "-r", "-t", "PENDING", f"--user={os.getuid()}",
                                "-o", "%i|%j").stdout
        ids = [job for job, _, name in (line.partition("|") for line in listed.splitlines())
               if former_pilot(name, pilots.installation, pilots.gen)]
        for i in range(0, len(ids), CANCEL_BATCH):
            # not checked: a task that ended meanwhile is an "invalid job id" to scancel
            backend._slurm("scancel", "--state=PENDING", *ids[i:i + CANCEL_BATCH], check=False)
    except (BackendUnavailable, OSError, subprocess.CalledProcessError) as e:
        log.warning("the former backend's pending pilots were not cancelled (%s): each that "
                    "starts takes nothing and leaves after %g s", e, pilots.idle_s)
        return []
    if ids:
        log.info("cancelled %d pending pilots of a backend before this restart", len(ids))
    return ids
