"""Real-parts test harnesses: throwaway PostgreSQL, Slurm, Ray and headless Chromium.

Integration tests and bench scripts start the real servers through these classes; each one
lives in a temp dir, listens on free loopback ports, and stops only what it started. See
README.md next to this file for what each starts, its limits and measured start times.

Importing this package is cheap: Ray and Playwright are imported only when a harness starts.
Pytest fixtures are in ``corral.testing.fixtures`` (``from corral.testing.fixtures import *``).
"""

from corral.testing.chromium import (
    CHROMIUM_FLAGS,
    chromium_command,
    find_chromium,
    playwright_launch_kwargs,
)
from corral.testing.errors import HarnessError, HarnessStartFailed, HarnessUnavailable
from corral.testing.postgres import PostgresServer
from corral.testing.raycluster import RayNodeSpec, RayTestCluster
from corral.testing.slurm import SlurmCluster
from corral.testing.slurmconf import SlurmSettings

__all__ = [
    "CHROMIUM_FLAGS",
    "HarnessError",
    "HarnessStartFailed",
    "HarnessUnavailable",
    "PostgresServer",
    "RayNodeSpec",
    "RayTestCluster",
    "SlurmCluster",
    "SlurmSettings",
    "chromium_command",
    "find_chromium",
    "playwright_launch_kwargs",
]
