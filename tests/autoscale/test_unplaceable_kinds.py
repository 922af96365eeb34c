"""Work the pool's nodes can never run, for its capacity kinds, node selector, image or GPU
memory (CapacityUnavailable, NoNodeSelected, GpuMemoryTooSmall): rented for exactly when an
offer is eligible for it, and never otherwise, with a sentence that names the offer rented or
says that none serves it and what to change (issue 11)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoscale_builders import A100_1, G6, ON_DEMAND, SPOT, job, offer
from corral.autoscale.packing import eligible
from corral.autoscale.pool import AutoscalerConfig, Decisions, PoolView, Waiting, decide
from corral.autoscale.state import AutoscalerState
from corral.core import reasons as R
from corral.core.model import LABEL_CAPACITY, LABEL_RUNS_IMAGES, LABEL_ZONE
from corral.providers.base import Offer

CONFIG = AutoscalerConfig()
G6_SPOT = offer("aws", "g6.xlarge", "L4", 1, "0.30", kind=SPOT, mem=23_034, cpu=4_000,
                ram=16_384)
G6_SPOT_B = replace(G6_SPOT, zone="us-east-1b")
#: a pool of spot offers and one on-demand offer
MIXED = [G6_SPOT, G6_SPOT_B, G6]


def _decide(waiting: list[Waiting], offers: list[Offer]) -> Decisions:
    return decide(PoolView(waiting, offers, []), AutoscalerState(), CONFIG, 0.0)


def _steps(waiting: list[Waiting], offers: list[Offer], n: int = 20) -> int:
    """Launches over `n` decisions a minute apart, the state carried as the control plane
    does (nothing launched ever joins, so the work keeps waiting)."""
    state, launched = AutoscalerState(), 0
    for k in range(n):
        d = decide(PoolView(waiting, offers, []), state, CONFIG, 60.0 * k)
        state, launched = d.state, launched + sum(x.count for x in d.launches)
    return launched


def test_non_preemptible_work_on_a_spot_pool_rents_the_on_demand_offer() -> None:
    x = job().stable().because(R.CAPACITY_UNAVAILABLE).build()
    d = _decide([x], MIXED)
    assert [(la.offer, la.count) for la in d.launches] == [(G6, 1)]
    assert d.waiting["j1"].sentence == ("capacity planned now for it: 1 x g6.xlarge on-demand in "
                               "us-east-1a (aws, 0.80/h)")
    assert "(CapacityUnavailable)" in d.launches[0].reason


def test_no_on_demand_offer_rents_nothing_and_says_what_to_change() -> None:
    x = job().stable().because(R.CAPACITY_UNAVAILABLE).build()
    assert _steps([x], [G6_SPOT, G6_SPOT_B]) == 0
    note = _decide([x], [G6_SPOT, G6_SPOT_B]).waiting["j1"].sentence
    assert note.startswith("no offer may serve it: g6.xlarge spot in us-east-1a (aws, 0.30/h): "
                           "capacity spot not allowed")
    assert "let a provider rent owned/on-demand capacity" in note
    assert "settings.capacity_kinds" in note and "list spot in the workload's capacity" in note
    assert "add on-demand to capacity" not in note


@pytest.mark.parametrize(("key", "value", "rented"), [
    (LABEL_ZONE, "us-east-1b", G6_SPOT_B),  # a built-in label an offer's instances carry
    (LABEL_CAPACITY, "on-demand", G6),
])
def test_a_selector_an_offer_carries_rents_that_offer(key: str, value: str, rented: Offer) -> None:
    x = job().select(key, value).because(R.NO_NODE_SELECTED).build()
    assert [la.offer for la in _decide([x], MIXED).launches] == [rented]


def test_a_selector_no_offer_carries_rents_nothing_over_many_decisions() -> None:
    x = job().select("team", "vision").because(R.NO_NODE_SELECTED).build()
    assert _steps([x], MIXED) == 0
    note = _decide([x], MIXED).waiting["j1"].sentence
    assert "its instances would not carry team=vision" in note
    assert "select only labels a rented instance carries" in note


def test_gpu_memory_rents_an_offer_with_larger_gpus_or_says_none_has_them() -> None:
    x = job().min_mem(40_960).because(R.GPU_MEMORY_TOO_SMALL).build()
    assert [la.offer for la in _decide([x], [G6, A100_1]).launches] == [A100_1]
    assert _steps([x], [G6]) == 0
    note = _decide([x], [G6]).waiting["j1"].sentence
    assert "23034 MiB per GPU, needs 40960" in note
    assert "GPUs of at least 40 GiB" in note and "lower min_gpu_memory" in note


def test_image_work_rents_only_an_offer_declared_to_run_images() -> None:
    x = job().select(LABEL_RUNS_IMAGES, "true").because(R.NO_NODE_SELECTED).build()
    # offers that do not say (the default) or say no: never assumed to run images
    assert _steps([x], [G6, replace(G6_SPOT, runs_images=False)]) == 0
    note = _decide([x], [G6]).waiting["j1"].sentence
    assert "its provider does not say whether its instances run images" in note
    assert "declare runs_images: true" in note and "remove image" in note
    podman = replace(G6_SPOT_B, runs_images=True)
    assert [la.offer for la in _decide([x], [G6, podman]).launches] == [podman]


WORK = [
    job("stable").stable().because(R.CAPACITY_UNAVAILABLE),
    job("spot-only").kinds(SPOT).because(R.CAPACITY_UNAVAILABLE),
    job("od-only").kinds(ON_DEMAND).because(R.CAPACITY_UNAVAILABLE),
    job("zone").select(LABEL_ZONE, "us-east-1b").because(R.NO_NODE_SELECTED),
    job("label").select("fabric", "ib").because(R.NO_NODE_SELECTED),
    job("image").select(LABEL_RUNS_IMAGES, "true").because(R.NO_NODE_SELECTED),
    job("mem").min_mem(40_960).because(R.GPU_MEMORY_TOO_SMALL),
    job("both").stable().min_mem(40_960).because(R.CONSTRAINTS_DISJOINT),
]
OFFER_SETS = [[], [G6_SPOT], [G6_SPOT, G6_SPOT_B], MIXED, [G6, A100_1],
              [replace(G6_SPOT_B, runs_images=True), A100_1], [replace(A100_1, capacity_kind=SPOT)]]


@pytest.mark.parametrize("offers", OFFER_SETS, ids=lambda s: "+".join(
    f"{o.instance_type}/{o.capacity_kind}/{o.zone}" for o in s) or "none")
@pytest.mark.parametrize("built", WORK, ids=lambda b: b.w.id)
def test_rented_for_exactly_when_an_offer_is_eligible(built, offers: list[Offer]) -> None:
    x = built.build()
    d = _decide([x], offers)
    served = [o for o in offers if eligible(x.workload, o, x.workload.allowed_capacity) is None]
    assert bool(d.launches) == bool(served)
    assert all(la.offer in served for la in d.launches)
    assert d.waiting[x.workload.id].sentence.startswith(
        "capacity planned now for it" if served else "no offer may serve it")


def test_a_custom_label_rents_only_an_offer_whose_provider_gives_it() -> None:
    """Instances join with their provider's `labels` (`Offer.labels`): work selecting one is
    rented for there, only there, and never on a value the offer does not give."""
    x = job().select("team", "vision").because(R.NO_NODE_SELECTED).build()
    vision = replace(G6_SPOT_B, labels=(("team", "vision"),))
    assert [la.offer for la in _decide([x], [G6, vision]).launches] == [vision]
    audio = replace(G6, labels=(("team", "audio"),))
    assert _steps([x], [G6, audio]) == 0
    note = _decide([x], [audio]).waiting["j1"]
    assert note.kind == "NoOfferServes" and "would not carry team=vision" in note.sentence
    assert "give a provider the others in its labels" in note.sentence
    # a label cannot stand in for a built-in one: the instance joins in its offer's zone
    zoned = replace(G6, labels=((LABEL_ZONE, "us-east-1b"),))
    y = job("y").select(LABEL_ZONE, "us-east-1b").because(R.NO_NODE_SELECTED).build()
    assert eligible(y.workload, zoned, (ON_DEMAND,)) is not None
