"""A real `corral up` with a priced pool in a subprocess; started, killed (by PID) and restarted
by the tests, and its workers' process groups killed by their recorded identity at the end."""

from __future__ import annotations

from pathlib import Path

import yaml

from corral.testing.corral_up import CorralServer

#: 36 credits per GPU-hour: one GPU-second costs exactly 0.01
POOL = {
    "providers": [{
        "name": "local", "capacity_kind": "owned",
        "node_groups": [{"name": "box", "count": 2, "gpu_model": "virtual-gpu", "gpus": 4,
                         "gpu_memory": "80GiB", "cpu": 64, "memory": "256GiB",
                         "price_per_gpu_hour": 36}],
    }],
    "queues": [{"name": "research", "quota_gpus": 8}],
    "ledger": {"enforce": True, "window": 60},
}


class PricedCorral(CorralServer):
    """The shared `corral up` harness with the priced pool above in its data dir."""

    def __init__(self, data_dir: Path, db: str | None = None) -> None:
        super().__init__(data_dir, db=db, pool=data_dir / "pool.yaml")

    def start(self, *extra: str, timeout: float = 60.0) -> PricedCorral:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        assert self.pool is not None
        self.pool.write_text(yaml.safe_dump(POOL))
        super().start(*extra, timeout=timeout)
        return self
