"""Providers: where capacity comes from (see README.md and base.py)."""

from corral.providers.base import CapacityState, Instance, Offer, Provider
from corral.providers.errors import ProviderError, ProviderReason

__all__ = ["CapacityState", "Instance", "Offer", "Provider", "ProviderError", "ProviderReason"]
