"""The static provider: today's pool file as a provider. Its nodes are simply there.

It rents nothing and returns nothing: `offers()` is empty, `launch` is refused, `terminate` is a
no-op for ids it does not know, and `instances()` is empty because corral launched nothing here
(reconciliation must never take pool-file nodes for strays). `nodes()` gives the inventory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from corral.core.model import Node
from corral.providers.base import Instance, Offer
from corral.providers.errors import ProviderError, ProviderReason

__all__ = ["StaticProvider"]


class StaticProvider:
    kind = "static"

    def __init__(self, name: str, nodes: Sequence[Node] = ()) -> None:
        self.name = name
        self._nodes = tuple(nodes)

    def nodes(self) -> tuple[Node, ...]:
        return self._nodes

    def offers(self) -> list[Offer]:
        return []

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        raise ProviderError(ProviderReason.INVALID_REQUEST,
                            f"provider {self.name!r} is static: it rents nothing; add nodes to "
                            "its node_groups in the pool file instead")

    def terminate(self, instance_ids: Sequence[str]) -> None:
        return None

    def instances(self) -> list[Instance]:
        return []
