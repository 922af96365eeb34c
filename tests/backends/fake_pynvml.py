"""The fake pynvml moved to `corral.testing.fake_pynvml` (a real agent process in a test loads
it too); the names tests import from here."""

from corral.testing.fake_pynvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeNvml,
    NVMLError,
)

__all__ = ["NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_NOT_SUPPORTED",
           "FakeGpu", "FakeNvml", "NVMLError"]
