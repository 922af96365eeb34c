"""The default scoring names its plugins by string (core.config stays free of numpy for the
clients that read the pool file's model, issue 14): each name is a registered plugin's."""

from __future__ import annotations

from corral.core.config import DEFAULT_SCORING
from corral.core.plugins import REGISTRY
from corral.core.plugins.bestfit import BESTFIT
from corral.core.plugins.builtin import CAPACITY, GPU_MODEL, PRICE
from corral.core.plugins.fragmentation import BALANCED_FGD


def test_the_default_scoring_names_registered_plugins() -> None:
    assert set(DEFAULT_SCORING) <= set(REGISTRY)
    assert dict(DEFAULT_SCORING) == {BALANCED_FGD: 1.0, BESTFIT: 0.01, GPU_MODEL: 2.0,
                                     PRICE: 0.001, CAPACITY: 0.5}
