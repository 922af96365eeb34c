"""The file an elastic job's worker may watch for its world (`CORRAL_ELASTIC_WORLD_FILE`).

    {"generation": 3, "world_size": 6, "min_workers": 2, "max_workers": 8, "members": [...]}

Two writers, one format: the control plane, where it sees the job's checkpoint directory
(before it stops the members for a resize, with the member ids: `corral.control.elastic`),
and the agent, on the host where a member runs (at each launch, from the variables the launch
carries: a member of a new world is always relaunched, so the host's file is never older than
the newest member started there). The variables alone say the same; the file is for a worker
that watches instead of reading its environment once.

A file is never moved back to an older generation (two members of different generations on
one host, or a slow writer), is replaced whole (a temporary file, then a rename: a reader
never sees half of it), and only in a directory that exists: never one made here, which
would belong to the writer's user and not the workers'.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "CORRAL_ELASTIC_GENERATION",
    "CORRAL_ELASTIC_MAX",
    "CORRAL_ELASTIC_MIN",
    "CORRAL_ELASTIC_WORLD_FILE",
    "CORRAL_WORLD_SIZE",
    "world_body",
    "write_from_env",
    "write_world_file",
]

CORRAL_WORLD_SIZE: Final = "CORRAL_WORLD_SIZE"
CORRAL_ELASTIC_GENERATION: Final = "CORRAL_ELASTIC_GENERATION"
CORRAL_ELASTIC_WORLD_FILE: Final = "CORRAL_ELASTIC_WORLD_FILE"
CORRAL_ELASTIC_MIN: Final = "CORRAL_ELASTIC_MIN_WORKERS"
CORRAL_ELASTIC_MAX: Final = "CORRAL_ELASTIC_MAX_WORKERS"

log = logging.getLogger(__name__)


def world_body(generation: int, world_size: int, min_workers: int, max_workers: int,
               members: Sequence[str] | None = None) -> dict[str, Any]:
    """The file's content; `members` only where the writer knows them (the control plane)."""
    body: dict[str, Any] = {"generation": generation, "world_size": world_size,
                            "min_workers": min_workers, "max_workers": max_workers}
    if members is not None:
        body["members"] = list(members)
    return body


def write_world_file(path: str, body: Mapping[str, Any]) -> bool:
    """Write `body` to `path` unless its directory is missing or the file holds a newer
    generation; whether it was written. An OSError is logged, never raised: the variables
    remain the contract."""
    if not path or not os.path.isdir(os.path.dirname(path)):
        return False
    if _generation(path) > int(body["generation"]):
        return False
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(dict(body), f)
        os.replace(tmp, path)
    except OSError as e:
        log.info("world file %s not written here: %s", path, e)
        return False
    return True


def write_from_env(env: Mapping[str, str]) -> bool:
    """Write the world a launch carries (its elastic variables) where it says; False for a
    launch that is not an elastic member's or names no file."""
    path = env.get(CORRAL_ELASTIC_WORLD_FILE, "")
    try:
        body = world_body(int(env[CORRAL_ELASTIC_GENERATION]), int(env[CORRAL_WORLD_SIZE]),
                          int(env[CORRAL_ELASTIC_MIN]), int(env[CORRAL_ELASTIC_MAX]))
    except (KeyError, ValueError):
        return False
    return write_world_file(path, body)


def _generation(path: str) -> int:
    try:
        with open(path) as f:
            return int(json.load(f).get("generation", -1))
    except (OSError, ValueError, AttributeError):
        return -1
