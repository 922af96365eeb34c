"""Packaging fields of a workload spec: what a worker's environment and files are made of.

    env:      {HF_TOKEN: {secret: hf-token}, LR: "0.1"}   a value, or a stored secret by name
    setup:    "pip install -r requirements.txt"             run before the command, same worker
    workdir:  ./src                                         copied to each worker, its cwd
    image:    nvcr.io/nvidia/pytorch:24.05-py3              the container workers run in

Pure models and rules (pydantic only), used by `corral.spec.workload.WorkloadSpec`. What each
field does at run time: the store's secrets (`corral.store.secrets`, resolved at launch by
`corral.control.act`), the backends (`corral.backends.local_runner` for setup,
`corral.backends.workdir` for workdir, `corral.backends.kubernetes_objects` for image). Documented in docs/specs.md
("Packaging").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from corral.spec import limits as LIM

__all__ = [
    "MAX_IMAGE_CHARS",
    "MAX_VOLUMES",
    "EnvValue",
    "SecretRef",
    "VolumeSpec",
    "check_image",
    "check_volumes",
    "packaging_notes",
    "secret_refs",
    "volume_env",
]

MAX_IMAGE_CHARS: Final = 512
MAX_VOLUMES: Final = 16
VOLUME_ENV_PREFIX: Final = "CORRAL_VOLUME_"  # + the name in upper case, '-' and '.' as '_'

_SECRET_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?")
# an OCI reference: [registry[:port]/]path[:tag][@digest]; no spaces, no shell metacharacters
_IMAGE = re.compile(
    r"[a-zA-Z0-9][a-zA-Z0-9._-]*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@[a-z0-9]+:[a-f0-9]{32,128})?")


class SecretRef(BaseModel):
    """`{secret: hf-token}`: the value of the stored secret `hf-token` (the workload's queue's
    own, else a global one), read when each attempt launches. The value never enters the spec,
    the events, the logs or the dry run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str = Field(description="a secret's name (`corral secrets ls`)")

    @field_validator("secret")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _SECRET_NAME.fullmatch(v):
            raise ValueError("a secret's name is 1-63 lowercase letters, digits, '-', '_' or "
                             "'.', starting and ending with a letter or digit: fix the name "
                             "(`corral secrets ls` lists them)")
        return v


def _env_kind(value: object) -> str:
    return "function-secret-ref" if isinstance(value, (dict, SecretRef)) else "str"


#: one `env` value: text, or `{secret: NAME}`. Told apart by shape before validation, so a bad
#: reference gets one error about the reference, not a second one saying it is not a string;
#: the tags are named so that `corral.spec.errors` leaves them out of the field's path
#: (`env.HF_TOKEN.secret`, not `env.HF_TOKEN.SecretRef.secret`)
EnvValue = Annotated[
    Annotated[Annotated[str, Field(max_length=LIM.MAX_ARG_CHARS)], Tag("str")]
    | Annotated[SecretRef, Tag("function-secret-ref")],
    Discriminator(_env_kind),
]


class VolumeSpec(BaseModel):
    """Named data at `mount` in the worker: a directory of the node (`host_path`) or, on
    Kubernetes, a persistent volume claim (`claim`). The worker finds the path in
    CORRAL_VOLUME_<NAME>. What each backend does with it: docs/specs.md "Volumes"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="1-63 lowercase letters, digits, '-'; CORRAL_VOLUME_<NAME>")
    mount: str = Field(max_length=LIM.MAX_PATH_CHARS,
                       description="the absolute path the worker sees it at")
    host_path: str | None = Field(None, max_length=LIM.MAX_PATH_CHARS,
                                  description="a directory on the node")
    claim: str | None = Field(None, max_length=253,
                              description="Kubernetes: a PersistentVolumeClaim's name")
    read_only: bool = Field(False, description="mounted read-only (containers only)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _SECRET_NAME.fullmatch(v) or "." in v or "_" in v:
            raise ValueError("a volume's name is 1-63 lowercase letters, digits and '-' "
                             "(it names the variable CORRAL_VOLUME_<NAME>)")
        return v

    @field_validator("mount", "host_path")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or "\0" in v or ":" in v or "," in v):
            raise ValueError("an absolute path without ':' or ',' (they separate mounts)")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> VolumeSpec:
        if (self.host_path is None) == (self.claim is None):
            raise ValueError("give exactly one of host_path (a directory on the node) or claim "
                             "(a Kubernetes PersistentVolumeClaim)")
        return self

    @property
    def env_name(self) -> str:
        return VOLUME_ENV_PREFIX + self.name.upper().replace("-", "_")


def check_volumes(volumes: list[VolumeSpec]) -> list[VolumeSpec]:
    names = [v.name for v in volumes]
    mounts = [v.mount.rstrip("/") or "/" for v in volumes]
    if len(set(names)) < len(names):
        raise ValueError("two volumes share a name; give each its own")
    if len(set(mounts)) < len(mounts):
        raise ValueError("two volumes share a mount path; give each its own")
    return volumes


def volume_env(volumes: list[VolumeSpec]) -> dict[str, str]:
    """CORRAL_VOLUME_<NAME> -> where the worker finds each volume."""
    return {v.env_name: v.mount for v in volumes}


def secret_refs(env: Mapping[str, object]) -> dict[str, str]:
    """env variable -> secret name, for the entries of `env` that name a secret."""
    return {k: v.secret for k, v in env.items() if isinstance(v, SecretRef)}


def check_image(value: str) -> str:
    if len(value) > MAX_IMAGE_CHARS or not _IMAGE.fullmatch(value):
        raise ValueError("not a container image reference; write it as "
                         "[registry/]name[:tag][@sha256:digest], e.g. "
                         "nvcr.io/nvidia/pytorch:24.05-py3")
    return value


def packaging_notes(env: Mapping[str, object], setup: str | None = None,
                    workdir: str | None = None, image: str | None = None,
                    volumes: Sequence[VolumeSpec] = (), shm_mib: int | None = None) -> list[str]:
    """What the packaging fields will do, in sentences (`corral submit --dry-run`)."""
    notes = [f"env {k}: the value of secret {name!r} (the queue's, else the global one), read "
             "at each launch; never shown" for k, name in sorted(secret_refs(env).items())]
    if setup is not None:
        notes.append("setup: runs with /bin/sh before the command on every worker of every "
                     "attempt; a non-zero exit ends the worker as SetupFailed with that code "
                     "(retried only if restart_on lists the code)")
    if workdir is not None and workdir.startswith("sha256:"):
        notes.append(f"workdir: the uploaded archive {workdir[:19]}... is fetched by the "
                     "worker's host and unpacked into each attempt's directory; the command "
                     "runs there (unless working_dir is set)")
    elif workdir is not None:
        notes.append(f"workdir: {workdir} is copied into each attempt's directory and the "
                     "command runs there (unless working_dir is set)")
    if image is not None:
        notes.append(f"image: workers run in {image}")
    for v in volumes:
        source = f"the node's {v.host_path}" if v.host_path else f"claim {v.claim}"
        notes.append(f"volumes: {v.name} ({source}) at {v.mount}"
                     + (", read-only" if v.read_only else "") + f", also in {v.env_name}")
    if shm_mib is not None:
        notes.append(f"shm_size: /dev/shm of {shm_mib} MiB (Kubernetes)")
    return notes
