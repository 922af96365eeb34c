"""What the local backend refuses to launch, checked before it writes or starts anything, so a
refusal is a clean InvalidLaunchSpec naming the field and the fix (the API asks the same before
it accepts a submission: `corral.control.submission`)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from corral.backends.base import LaunchSpec
from corral.backends.containers import ContainerRuntime, gpu_handout, runtime_problem
from corral.backends.errors import InvalidLaunchSpec
from corral.backends.workdir import check_workdir, is_archive
from corral.core.model import Node

__all__ = ["SAFE_ID", "check_program", "check_spec"]

#: a workload id the local backend can keep as a folder name
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_spec(spec: LaunchSpec, own_nodes: Sequence[Node], *, remote_workers: bool,
               default_path: str, containers: ContainerRuntime | None = None) -> None:
    """Raise InvalidLaunchSpec (naming the field and the fix) for what the local backend could
    not launch: an id that is no folder name, workers on nodes it does not have or devices
    beyond a node's, a missing working_dir, an image without a container runtime (or with GPUs
    it cannot hand in), a bad workdir, a program it cannot find (on the spec's PATH, else
    `default_path`; not checked in an image). remote_workers: workers on other hosts' nodes
    are theirs (the agent), but one must be here."""
    if not SAFE_ID.fullmatch(spec.workload_id):
        raise InvalidLaunchSpec(
            "workload_id", f"{spec.workload_id!r}: the local backend keeps each workload in "
            "a folder of that name; use letters, digits, '.', '_' and '-' (200 at most), "
            "starting with a letter or digit")
    nodes = {n.id: n for n in own_nodes}
    if remote_workers and not any(a.node_id in nodes for a in spec.assignments):
        raise InvalidLaunchSpec(
            "assignments", f"no worker is placed on this backend's nodes ({sorted(nodes)})")
    for a in spec.assignments:
        node = nodes.get(a.node_id)
        if node is None and remote_workers:
            continue  # another host's worker
        if node is None:
            raise InvalidLaunchSpec(
                "assignments", f"worker {a.worker}: node {a.node_id!r} is not in this "
                f"backend's inventory ({sorted(nodes)})")
        if any(d >= node.gpu_count for d in a.devices):
            raise InvalidLaunchSpec(
                "assignments", f"worker {a.worker}: node {a.node_id} has {node.gpu_count} "
                f"GPUs (0..{node.gpu_count - 1}), the plan gives {list(a.devices)}")
    if spec.working_dir is not None and not Path(spec.working_dir).is_dir():
        raise InvalidLaunchSpec(
            "working_dir", f"{spec.working_dir!r} is not a directory: create it or fix the "
            "path")
    if spec.image is not None:
        check_image(spec, containers)
    if spec.workdir is not None:
        check_workdir(spec.workdir)
    if not spec.shell and spec.image is None:  # an image's programs are its own
        check_program(spec, default_path)


def check_image(spec: LaunchSpec, containers: ContainerRuntime | None) -> None:
    """An image needs a container runtime here, and a way to hand in the planned GPUs."""
    if containers is None:
        raise InvalidLaunchSpec(
            "image", f"the local backend runs workers as processes on this host, and no "
            f"container runtime can run here ({runtime_problem()}), so {spec.image!r} "
            "cannot be honoured: install podman, remove image (the host's own software "
            "runs), or submit to a Kubernetes or Slurm (pyxis) pool")
    for a in spec.assignments:
        refusal, _ = gpu_handout(containers, a.devices)
        if refusal is not None:
            raise InvalidLaunchSpec("image", refusal)
    if spec.working_dir is not None and Path(spec.working_dir).resolve() == Path("/"):
        raise InvalidLaunchSpec(
            "working_dir", "'/' would be mounted over the image's own root: give the "
            "directory the command needs")

def check_program(spec: LaunchSpec, default_path: str) -> None:
    """The command's program: an executable file (a path), else found on PATH."""
    program = spec.argv()[0]
    if "/" in program and spec.workdir is not None and is_archive(spec.workdir):
        return  # in the archive, unpacked only at launch (checked then by the runner)
    if "/" in program:
        path = Path(spec.working_dir or spec.workdir or ".") / program
        if path.is_file() and os.access(path, os.X_OK):
            return
        raise InvalidLaunchSpec(
            "command", f"{program!r} is not an executable file (relative to "
            f"{spec.working_dir or 'the current directory'}): fix the path or chmod +x it")
    search_path = spec.env.get("PATH") or default_path
    if shutil.which(program, path=search_path) is None:
        raise InvalidLaunchSpec(
            "command", f"program {program!r} was not found on PATH ({search_path}): "
            "install it, give its full path, or set PATH in env")
