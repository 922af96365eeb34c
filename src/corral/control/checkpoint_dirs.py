"""Where a workload checkpoints: the folder its spec names, or one of its own under the control
plane's checkpoint root.

Below `act` (launches) and `elastic` (an elastic job's world file is written in it) so that
both import it at the top: `act` imports `elastic`, and neither may import the other back.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from corral.control.settings import ControlSettings
from corral.spec import WorkloadSpec
from corral.store.workloads import WorkloadRecord

__all__ = ["checkpoint_dir"]


def checkpoint_dir(rec: WorkloadRecord, spec: WorkloadSpec, settings: ControlSettings) -> str:
    """One per submission (replicas of a service share the folder name of their group)."""
    if spec.checkpoint_dir:
        return spec.checkpoint_dir
    root = str(settings.checkpoint_root)
    # a relative root is relative to the working directory of the moment
    return os.path.join(_resolved(root, "" if os.path.isabs(root) else os.getcwd()), rec.id)


@functools.lru_cache(maxsize=16)
def _resolved(root: str, cwd: str) -> str:
    """The absolute form of a checkpoint root (relative to `cwd`), made once: resolving walks
    the path with a system call per part, and a step that launches 10,000 workers did it
    10,000 times (0.34 of 0.81 s of launching 2,071 in a profile at 2,000 nodes)."""
    return str(Path(cwd, root).resolve())
