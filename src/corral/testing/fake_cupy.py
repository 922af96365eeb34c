"""A stand-in for the `cupy` module, for tests on machines without GPUs: numpy pretending to be
a GPU library, with devices that can be told to return corrupted results.

It mimics only what `corral.agent.known_answer.CupyCompute` calls: `cuda.runtime
.getDeviceCount`, `cuda.Device(i)` (a context manager with `synchronize`), `asarray`, `matmul`,
`invert`, `asnumpy`. A device listed in `corrupt` silently changes the first value of whatever
it hands back (one bit of an integer, +1 on a float), as a unit with a silent data corruption
fault would. Nothing here touches a GPU.

In another process (the known-answer test's child of a real `corral agent`):
`install_shim(folder, state_file)` writes a `cupy.py` into `folder` that serves the devices
described in `state_file` (JSON `{"devices": 2, "corrupt": [1]}`, read when the module is
imported, so each test run sees the file's current state); put `folder` first on PYTHONPATH.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fake_cupy", "install_shim"]


def fake_cupy(devices: int, corrupt: set[int] | frozenset[int] = frozenset()) -> types.ModuleType:
    """A module object with cupy's names (module docstring)."""
    current = [0]

    class Device:
        def __init__(self, index: int) -> None:
            if not 0 <= index < devices:
                raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {index}")
            self.index = index

        def __enter__(self) -> Device:
            self._before = current[0]
            current[0] = self.index
            return self

        def __exit__(self, *exc: object) -> None:
            current[0] = self._before

        def synchronize(self) -> None:
            pass

    def asnumpy(x: Any) -> Any:
        out = np.array(x, copy=True)
        if current[0] in corrupt and out.size:
            flat = out.reshape(-1)
            if np.issubdtype(out.dtype, np.integer):
                flat[0] ^= 1 << 3
            else:
                flat[0] += 1
        return out

    module = types.ModuleType("cupy", "corral.testing.fake_cupy: not NVIDIA's library")
    runtime = types.SimpleNamespace(getDeviceCount=lambda: devices)
    module.cuda = types.SimpleNamespace(runtime=runtime, Device=Device)  # type: ignore[attr-defined]
    module.asarray = lambda x: np.array(x, copy=True)  # type: ignore[attr-defined]
    module.matmul = np.matmul  # type: ignore[attr-defined]
    module.invert = np.invert  # type: ignore[attr-defined]
    module.asnumpy = asnumpy  # type: ignore[attr-defined]
    return module


def from_file(path: str) -> types.ModuleType:
    with open(path) as f:
        state = json.load(f)
    return fake_cupy(int(state.get("devices", 1)), frozenset(state.get("corrupt", [])))


def install_shim(folder: Path, state_file: Path) -> Path:
    """Write `folder`/cupy.py serving `state_file` (module docstring); returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "cupy.py"
    shim.write_text(
        "# corral.testing.fake_cupy's shim: a fake cupy for tests, not a GPU library\n"
        "import sys\n"
        "from corral.testing.fake_cupy import from_file\n"
        f"sys.modules[__name__] = from_file({str(state_file)!r})\n")
    return shim
