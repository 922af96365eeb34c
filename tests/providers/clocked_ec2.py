"""EC2 on moto for the control-loop tests over a manual clock (test_replace_restart,
test_unplaceable_live): moto stamps an instance's LaunchTime on the wall clock, which the rig's
`ManualClock` does not follow, so the provider reports launch times read on the test's clock
instead, kept in a dict the test owns (as EC2 keeps LaunchTime across a server's restart)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from corral.control import ManualClock
from corral.providers.aws import AwsProvider
from corral.providers.base import Instance, Offer


def moto_image(client: Any) -> str:
    """An image id moto lists (any will do: nothing boots)."""
    return str(client.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"])


class ClockedAws(AwsProvider):
    """An AwsProvider whose instances' `launched_at` is the test clock's time at the first
    launch or listing that saw them. Subclasses set `clock` and `launched` in `__init__`."""

    clock: ManualClock
    launched: dict[str, float]

    def launch(self, offer: Offer, count: int, *, user_data: str,
               tags: Mapping[str, str]) -> list[Instance]:
        return self._timed(super().launch(offer, count, user_data=user_data, tags=tags))

    def instances(self) -> list[Instance]:
        return self._timed(super().instances())

    def _timed(self, out: list[Instance]) -> list[Instance]:
        for i in out:
            self.launched.setdefault(i.id, self.clock.now())
        return [replace(i, launched_at=self.launched[i.id]) for i in out]
