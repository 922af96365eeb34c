"""Where a local corral keeps its state and listens unless told otherwise.

Shared by `corral up` (which writes the data dir) and the client commands (which read
`server.json` and `admin-token` from it): kept apart from `corral.cli.server` so that a client
command never imports the server stack (FastAPI, SQLAlchemy, numpy) to learn a port number.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_GPU_PROBE_INTERVAL_S", "DEFAULT_PORT", "DataDir", "default_data_dir"]

DEFAULT_PORT = 8765
DEFAULT_GPU_PROBE_INTERVAL_S = 10.0


def default_data_dir() -> Path:
    return Path(os.environ.get("CORRAL_DATA_DIR") or ".corral")


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "corral.db"

    @property
    def admin_token(self) -> Path:
        return self.root / "admin-token"

    @property
    def server_file(self) -> Path:
        return self.root / "server.json"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"
