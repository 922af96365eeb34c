"""Which packaging fields each backend honours, checked when a spec is submitted.

    field     local           agent        slurm                     ray       kubernetes
    setup     runner          runner       runner                    runner    shell prologue
    workdir   copy per launch uploaded     refused                   refused   refused
    image     podman, where   podman, on   pyxis, where installed    podman    the pod's image
              installed       hosts that                             (nodes)
                              have it

Volumes: a node's directory (`host_path`) on every backend; in a container (Kubernetes, or Slurm,
local or agent with an image) mounted at `mount`, read-only if asked; for a process on the node (local, agent,
Ray, Slurm without an image) there is nothing to mount it with, so `mount` must be the host path
and `read_only` cannot be promised (both refused otherwise, naming volumes[i].<field>). A
`claim` and `shm_size` are Kubernetes' alone.

A field a backend cannot honour is refused at submission (422 naming the field and saying what
to do), never accepted and ignored: a job that asked for an image and ran on the host's Python
would fail later, or worse, succeed on the wrong software. "refused" for workdir means "not
uploaded through the control plane": point working_dir at shared storage instead; the agent
backend takes an uploaded workdir (`sha256:<hex>`, which `corral submit FILE` makes). A backend
that knows more about its cluster than its name says (Slurm: is pyxis installed?) answers with
its own `packaging_fields`, which the API passes as `honoured`. The local backend's workdir is
checked here as it will be at launch (a directory on this host, within `MAX_WORKDIR_BYTES`).
Docs: docs/specs.md "Packaging".
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from corral.backends.errors import InvalidLaunchSpec
from corral.backends.workdir import check_workdir, is_archive
from corral.spec import WorkloadSpec

__all__ = ["HONOURED", "packaging_refusals"]

#: backend name -> the packaging fields it honours
HONOURED: Final[dict[str, frozenset[str]]] = {
    "local": frozenset({"setup", "workdir"}),
    # workdir uploaded (sha256:...), fetched by the agent; image where a host has podman
    # (AgentBackend.packaging_fields)
    "agent": frozenset({"setup", "workdir"}),
    "kubernetes": frozenset({"setup", "image"}),
    "slurm": frozenset({"setup"}),  # image too where pyxis is (SlurmBackend.packaging_fields)
    "ray": frozenset({"setup"}),
    "fake": frozenset({"setup", "workdir", "image"}),  # tests: the fake runs nothing
}

_WHY: Final[dict[str, str]] = {
    "image": "runs processes on its hosts and no container runtime is configured for it "
             "(Slurm: pyxis is not installed; local: podman cannot run here; agent: no node "
             "can run images, none has podman): remove image (the host's own software runs), "
             "or submit to a Kubernetes pool",
    "workdir": "cannot copy a directory to its workers yet (no upload through the control "
               "plane): put the code on storage the workers see and name it in working_dir",
    "setup": "does not run setup lines yet: put them in the command (shell: 'setup && run')",
}


def packaging_refusals(spec: WorkloadSpec, backend: str,
                       honoured: frozenset[str] | None = None) -> list[tuple[str, str]]:
    """(field, message) for each packaging field of `spec` that `backend` cannot honour; []
    when it can run them all. `honoured`: what the backend itself says (else the table)."""
    if honoured is None:
        honoured = HONOURED.get(backend, frozenset())
    asked = {"setup": spec.setup, "workdir": spec.workdir, "image": spec.image}
    out = [(f, f"the {backend} backend {_WHY[f]}") for f, v in asked.items()
           if v is not None and f not in honoured]
    out += _volume_refusals(spec, backend)
    out += _workdir_form(spec, backend, honoured)
    if (spec.workdir is not None and "workdir" in honoured and backend == "local"
            and not is_archive(spec.workdir)):
        try:
            check_workdir(spec.workdir)
        except InvalidLaunchSpec as e:
            out.append(("workdir", str(e).split(": ", 1)[1]))
    return out


def _workdir_form(spec: WorkloadSpec, backend: str, honoured: frozenset[str]
                  ) -> list[tuple[str, str]]:
    """A path where the workers need an upload, or an upload where they copy a path."""
    if spec.workdir is None or "workdir" not in honoured or backend == "fake":
        return []
    uploaded = is_archive(spec.workdir)
    if backend == "agent" and not uploaded:
        return [("workdir", "the agent backend runs workers on other hosts, which do not see "
                 f"{spec.workdir!r}: `corral submit FILE` uploads the directory for you (or "
                 "PUT its tar to /v1/workdirs/sha256:<hex> and give workdir: sha256:<hex>)")]
    if backend == "local" and uploaded:
        return [("workdir", "the local backend copies a directory of this host: give its "
                 "absolute path")]
    return []


_KUBERNETES: Final = frozenset({"kubernetes", "fake"})


def _volume_refusals(spec: WorkloadSpec, backend: str) -> list[tuple[str, str]]:
    """The volumes (and shm_size) `backend` cannot give as asked (module docstring)."""
    out = []
    containers = backend in _KUBERNETES or (backend in ("slurm", "local", "agent")
                                            and spec.image is not None)
    for i, v in enumerate(spec.volumes):
        at = f"volumes[{i}]"
        if v.claim is not None and backend not in _KUBERNETES:
            out.append((f"{at}.claim", f"a PersistentVolumeClaim needs the Kubernetes "
                        f"backend; on {backend} give the node's directory as host_path"))
            continue
        if containers or v.host_path is None:
            continue
        if v.mount.rstrip("/") != v.host_path.rstrip("/"):
            out.append((f"{at}.mount", f"the {backend} backend runs the worker as a process on "
                        "the node, with no container to mount the directory elsewhere: set "
                        f"mount to {v.host_path} (the worker finds it in {v.env_name})"))
        if v.read_only:
            out.append((f"{at}.read_only", f"a process on the node is not kept from writing "
                        f"there on the {backend} backend: remove read_only (or run in an image "
                        "on Kubernetes or Slurm with pyxis)"))
        if backend == "local" and not Path(v.host_path).is_dir():
            out.append((f"{at}.host_path", f"{v.host_path!r} is not a directory on this host: "
                        "create it or fix the path"))
    if spec.shm_size is not None and backend not in _KUBERNETES:
        out.append(("shm_size", f"only Kubernetes sizes /dev/shm per worker; on {backend} the "
                    "node's own /dev/shm is used: remove shm_size"))
    return out
