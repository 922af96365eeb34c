"""`corral submit FILE` with `workdir:` on a pool whose workers are on other hosts (agents):
pack each item's directory, upload it once by content digest, submit `workdir: sha256:<hex>`.

A server whose workers read the directory where it is (the local backend) says it wants no
upload, and the path is sent as before; an older server that has no /v1/workdirs is treated
the same. See `corral.sdk.workdirs` (packing, content addressing) and docs/specs.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from corral.sdk import Client
from corral.sdk.workdirs import WorkdirTooBig, upload, uploads_wanted

__all__ = ["upload_workdirs"]

err = Console(stderr=True)


def upload_workdirs(client: Client, items: list[dict[str, Any]]) -> None:
    """Replace each item's workdir path by its uploaded archive's digest, when the server
    wants uploads; exit 1 naming the item when one cannot be packed."""
    paths = [(i, item["workdir"]) for i, item in enumerate(items)
             if isinstance(item.get("workdir"), str) and item["workdir"].startswith("/")]
    if not paths or not uploads_wanted(client):
        return
    done: dict[str, str] = {}  # one upload per directory, however many items name it
    for i, path in paths:
        if path not in done:
            try:
                done[path] = upload(client, Path(path))
            except (WorkdirTooBig, OSError) as e:
                where = f"workloads[{i}].workdir" if len(items) > 1 else "workdir"
                err.print(f"[red]error:[/red] {where}: {e}", markup=True, highlight=False)
                raise typer.Exit(1) from None
        items[i]["workdir"] = done[path]
