"""Which offers a waiting workload may use, and how its workers pack onto instances.

A *bin* is one instance, launched or about to be: its offer and what is still free on it (GPU
share per device, CPU, RAM). Waiting work packs first onto instances already on their way (they
were rented for it; smaller work only where no dearer per GPU-hour than its own offer, pool.py),
then onto new instances of the offer that costs least for the whole workload.

Rules an offer must meet for a workload (the core's filters, read from the offer instead of a
node): an allowed GPU model, an allowed capacity kind, a price per GPU-hour within the cap, the
least GPU memory, and a node selector that only names labels an instance of the offer joins
with (the built-in ones it fixes and its provider's `labels`, `Offer.labels`) and, for an image,
an offer whose provider declares that its instances run images (`Offer.runs_images`; unsaid:
not eligible). A gang's workers share one zone; `NVLINK`/`RACK`
topology needs them on one instance (a provider cannot promise a rack).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.model import (
    LABEL_CAPACITY,
    LABEL_MODEL,
    LABEL_PROVIDER,
    LABEL_REGION,
    LABEL_RUNS_IMAGES,
    LABEL_VENDOR,
    LABEL_ZONE,
    MILLI_PER_GPU,
    CapacityKind,
    TopologyLevel,
    Workload,
)
from corral.core.vendors import vendor_of
from corral.providers.base import Offer

__all__ = ["Bin", "eligible", "gpus_needed", "offer_key", "pack", "workers_per_instance", "zone_of"]


def offer_key(offer: Offer) -> str:
    """One offer's identity for backoff: provider, instance type, capacity kind and zone."""
    return f"{offer.provider}/{offer.instance_type}/{offer.capacity_kind}/{offer.zone}"


def zone_of(offer: Offer) -> tuple[str, str, str]:
    return (offer.provider, offer.region, offer.zone)


@dataclass
class Bin:
    """One instance's free room while the policy packs work onto it."""

    offer: Offer
    free_milli: list[int] = field(default_factory=list)
    free_cpu: int = 0
    free_mem: int = 0
    new: bool = True  # planned by this decision (False: already launched, not yet joined)

    @classmethod
    def empty(cls, offer: Offer, new: bool = True) -> Bin:
        return cls(offer, [MILLI_PER_GPU] * offer.gpus, offer.cpu_milli, offer.memory_mib, new)

    def take(self, w: Workload) -> bool:
        """Place one worker of `w` here if it fits; True when it did."""
        r = w.resources
        if r.cpu_milli > self.free_cpu or r.memory_mib > self.free_mem:
            return False
        devices = self._devices_for(w)
        if devices is None:
            return False
        for i, milli in devices:
            self.free_milli[i] -= milli
        self.free_cpu -= r.cpu_milli
        self.free_mem -= r.memory_mib
        return True

    def _devices_for(self, w: Workload) -> list[tuple[int, int]] | None:
        r, mem = w.resources, self.offer.gpu_memory_mib
        if r.gpus:
            whole = [i for i, f in enumerate(self.free_milli) if f == MILLI_PER_GPU]
            return [(i, MILLI_PER_GPU) for i in whole[: r.gpus]] if len(whole) >= r.gpus else None
        if not r.fractional:
            return []
        if r.gpu_memory_mib > mem:
            return None
        milli = r.nominal_milli(mem)
        # best fit: the fullest device that still holds the share, as the core picks
        fits = [(f, i) for i, f in enumerate(self.free_milli) if f >= milli]
        return [(min(fits)[1], milli)] if fits else None


def _selector_unmet(w: Workload, offer: Offer) -> str | None:
    """Why an instance of `offer` would not carry a label `w` selects (None: it carries them
    all). An instance joins with the built-in labels its offer fixes (provider, region, zone,
    capacity kind, GPU model and its vendor) and the labels its provider gives it
    (`Offer.labels`, passed to its agent as `--label`); whether it runs images is what its
    provider declares (`Offer.runs_images`), never assumed."""
    builtin = {**dict(offer.labels),  # the built-in ones win, as on a node (`Node.label`)
               LABEL_PROVIDER: offer.provider, LABEL_REGION: offer.region,
               LABEL_ZONE: offer.zone, LABEL_CAPACITY: str(offer.capacity_kind),
               LABEL_MODEL: offer.gpu_model, LABEL_VENDOR: str(vendor_of(offer.gpu_model))}
    for key, value in w.node_selector:
        if (key, value) == (LABEL_RUNS_IMAGES, "true"):  # an image's (`WorkloadSpec.to_core`)
            if offer.runs_images is None:
                return "its provider does not say whether its instances run images"
            if not offer.runs_images:
                return "its instances do not run images"
        elif builtin.get(key) != value:
            return f"its instances would not carry {key}={value}"
    return None


def eligible(w: Workload, offer: Offer, kinds: tuple[CapacityKind, ...]) -> str | None:
    """None when `offer` may serve `w` (using `kinds` as its allowed capacity); else why not."""
    r = w.resources
    if (r.gpus or r.fractional) and offer.gpus == 0:
        return "has no GPU"
    if w.gpu_models and offer.gpu_model not in w.gpu_models:
        return f"model {offer.gpu_model} not in {'/'.join(w.gpu_models)}"
    if offer.capacity_kind not in kinds:
        return f"capacity {offer.capacity_kind} not allowed"
    cap = w.max_price_per_gpu_hour
    if cap is not None and offer.gpus and float(offer.price_per_gpu_hour) > cap:
        return f"{offer.price_per_gpu_hour:.2f}/GPU-h above the cap of {cap:g}"
    if w.min_gpu_memory_mib and offer.gpu_memory_mib < w.min_gpu_memory_mib:
        return f"{offer.gpu_memory_mib} MiB per GPU, needs {w.min_gpu_memory_mib}"
    if (why := _selector_unmet(w, offer)) is not None:
        return why
    if workers_per_instance(w, offer) == 0:
        return "a worker does not fit one instance"
    if w.workers > 1 and w.topology <= TopologyLevel.RACK and workers_per_instance(w, offer) < w.workers:
        return f"topology {w.topology.name.lower()} needs the gang on one instance"
    return None


def workers_per_instance(w: Workload, offer: Offer) -> int:
    """How many workers of `w` one empty instance of `offer` holds."""
    b, n = Bin.empty(offer), 0
    while n < max(w.workers, 1) and b.take(w):
        n += 1
    return n


def pack(w: Workload, bins: list[Bin]) -> list[Bin] | None:
    """Place every worker of `w` on `bins` (all of one zone for a gang, one bin for tight
    topology), cheapest per GPU-hour first; returns the bins used, or None (nothing taken)."""
    ordered = sorted(bins, key=lambda b: (b.offer.price_per_gpu_hour, offer_key(b.offer)))
    groups: dict[tuple[str, str, str], list[Bin]] = {}
    for b in ordered:
        groups.setdefault(zone_of(b.offer), []).append(b)
    tight = w.workers > 1 and w.topology <= TopologyLevel.RACK
    for group in groups.values():
        candidates = [[b] for b in group] if tight else [group]
        for cands in candidates:
            trial = [Bin(b.offer, list(b.free_milli), b.free_cpu, b.free_mem, b.new) for b in cands]
            used = _first_fit(w, trial)
            if used is not None:
                for b, t in zip(cands, trial, strict=True):
                    b.free_milli, b.free_cpu, b.free_mem = t.free_milli, t.free_cpu, t.free_mem
                return [cands[i] for i in used]
    return None


def _first_fit(w: Workload, bins: list[Bin]) -> list[int] | None:
    used: list[int] = []
    for _ in range(max(w.workers, 1)):
        for i, b in enumerate(bins):
            if b.take(w):
                if i not in used:
                    used.append(i)
                break
        else:
            return None
    return used


def gpus_needed(w: Workload) -> float:
    """All of `w`'s GPUs (shares as fractions; 0 for CPU-only work)."""
    r = w.resources
    return max(w.workers, 1) * (r.gpus or (r.nominal_milli() / 1000 if r.fractional else 0))
