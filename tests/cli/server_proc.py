"""A real `corral up` in a subprocess (the shared harness in corral.testing.corral_up)."""

from corral.testing.corral_up import CorralServer, free_port, stop_workers

__all__ = ["CorralServer", "free_port", "stop_workers"]
