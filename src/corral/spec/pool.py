"""The pool file: providers with their node groups and prices, queues, scheduler knobs.

    providers:
      - name: aws-use1            # a cloud account + region, an on-prem site, a cluster
        capacity_kind: on-demand  # owned | on-demand | spot
        region: us-east-1
        labels: {team: vision}    # every node of it carries these (a rented one joins with them)
        # instance_labels: {g6.xlarge: {gpu-class: inference}}  # per instance type (aws, ssh)
        prices: {H100: 4.10}      # per GPU-hour, per model (a node group may override)
        node_groups:
          - name: p5
            count: 4
            gpu_model: H100
            gpus: 8
            gpu_memory: 80GiB
            cpu: 192
            memory: 2048GiB
            zone: us-east-1a
            racks: 2              # nodes are spread round-robin over this many racks,
                                  # or over named ones: racks: [r12, r13]
            labels: {fabric: ib-ndr}  # node labels for workloads' node_selector
    queues:
      - {name: research, quota_gpus: 16, limit_gpus: 48, weight: 2}
      - {name: research.nlp, parent: research, quota_gpus: 8}
    scheduler:
      scoring: {balanced-fgd: 1, bestfit: 0.01, gpu-model: 2, price: 0.001}

Node ids are `<provider>-<group>-<i>`. Each node is its own NVLink domain unless the group sets
`nvlink_domain_size` (nodes per NVLink domain, as in GB200 NVL72 racks). Besides the labels it is
given, every node carries built-in ones (`corral.spec.labels`): `corral.dev/region` is the
provider's region name, so providers that name a region alike (an on-prem site and a cloud region
in the same city, say `eu-central`) are one region to a selector and to topology.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from corral.core.config import SchedulerConfig
from corral.core.migration import MigrationRule
from corral.core.model import LABEL_VENDOR, CapacityKind, Node, Queue
from corral.core.vendors import Vendor
from corral.providers.base import ssh_instance_type
from corral.spec.labels import MAX_LABELS, check_labels, value_problem
from corral.spec.ledger import LedgerSpec, PriceSpec
from corral.spec.limits import MAX_PRICE
from corral.spec.provider_settings import (
    NEEDS,
    SETTINGS,
    AwsProviderSettings,
    SshHostSettings,
    SshProviderSettings,
    no_duplicates,
)
from corral.spec.quantities import CpuMilli, DurationS, SizeMiB
from corral.spec.workload import check_name

MAX_POOL_GPUS = 10_000_000  # a queue's quota or limit: far above any pool, finite
Price = Annotated[float, Field(strict=True, ge=0, le=MAX_PRICE, allow_inf_nan=False)]
QuotaGpus = Annotated[float, Field(strict=True, ge=0, le=MAX_POOL_GPUS, allow_inf_nan=False)]
# a scoring plugin's weight: a number as written (`price: true` is a mistake, not 1)
ScoringWeight = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class NodeGroupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    count: int = Field(1, strict=True, ge=1, le=100_000)
    gpu_model: str = ""
    gpus: int = Field(0, strict=True, ge=0, le=64)
    gpu_memory: SizeMiB = 0
    cpu: CpuMilli = 0
    memory: SizeMiB = 0
    price_per_gpu_hour: float | None = Field(None, strict=True, ge=0, le=MAX_PRICE, allow_inf_nan=False)
    capacity_kind: CapacityKind | None = None
    zone: str | None = None
    racks: Annotated[int, Field(strict=True)] | list[str] = Field(
        1, description="how many racks the nodes are spread over (round-robin), or their names "
        "(a name used in several groups of a provider's zone is one rack)")
    nvlink_domain_size: int = Field(1, strict=True, ge=1, description="nodes per NVLink domain")
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS,
                                   description="node labels (Kubernetes label syntax)")
    vendor: Vendor | None = Field(None, description="who makes the accelerators (nvidia, amd, "
                                  "intel, aws, google); default: read from gpu_model")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "node group name")

    @field_validator("racks")
    @classmethod
    def _racks(cls, v: int | list[str]) -> int | list[str]:
        if isinstance(v, int):
            if not 1 <= v <= 100_000:
                raise ValueError("racks is a count from 1 to 100000, or a list of rack names")
            return v
        if not v:
            raise ValueError("racks lists no rack; name at least one or give a count")
        for name in v:
            problem = value_problem("rack", name)
            if problem or not name:
                raise ValueError(f"rack name {name[:80]!r} must be 1-63 letters, digits, '-', "
                                 "'_' or '.', starting and ending with a letter or digit")
        if len(set(v)) < len(v):
            raise ValueError("racks names a rack twice; each name once")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)

    def rack(self, i: int) -> str:
        """Node `i`'s rack: named racks in turn, else `<group>-rack<k>`."""
        if isinstance(self.racks, list):
            return self.racks[i % len(self.racks)]
        return f"{self.name}-rack{i % self.racks}"

    @model_validator(mode="after")
    def _gpu(self) -> NodeGroupSpec:
        if self.gpus and not self.gpu_model:
            raise ValueError("a node group with GPUs needs gpu_model (for example H100)")
        if self.gpus and not self.gpu_memory:
            raise ValueError("a node group with GPUs needs gpu_memory per GPU (for example 80GiB)")
        return self




class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    #: where its nodes come from: `static` (its node_groups, as listed), `ssh` (hosts corral
    #: reaches over SSH), `aws` (EC2 instances the pool autoscaler rents and returns)
    kind: Literal["static", "ssh", "aws"] = "static"
    settings: dict[str, Any] = Field(default_factory=dict)
    capacity_kind: CapacityKind = CapacityKind.ON_DEMAND
    region: str = "default"
    zone: str = "default"
    prices: dict[str, Price] = Field(default_factory=dict)
    node_groups: list[NodeGroupSpec] = Field(default_factory=list)
    #: the pool autoscaler's bounds for a renting provider
    min_nodes: int = Field(0, strict=True, ge=0, le=100_000)
    max_nodes: int | None = Field(None, strict=True, ge=0, le=100_000)
    max_spend_per_hour: float | None = Field(None, strict=True, ge=0, le=1e9, allow_inf_nan=False)
    #: a rented node idle this long (counted from its join, or from its last work's end) is
    #: drained and returned (dstack's `idle_duration`); None: the `autoscaler:` idle_timeout
    idle_timeout: DurationS | None = Field(None, ge=0, le=30 * 86_400)
    #: the same per instance type of this provider (an aws type of `settings.instance_types`,
    #: an ssh shape `ssh:<gpus>x<model>`): wins over `idle_timeout`
    idle_timeouts: dict[str, DurationS] = Field(default_factory=dict, max_length=256)
    #: labels every node of this provider carries (a static group's, an ssh host's own win):
    #: a rented instance joins with them, so work that selects one may be rented for here
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS,
                                   description="labels its nodes join with (Kubernetes label "
                                   "syntax); a node group's or ssh host's own labels win")
    #: labels per instance type, over `labels` (an ssh host's own win over both): a provider of
    #: several types labels each, e.g. `gpu-class: inference` on its L4 types only
    instance_labels: dict[str, dict[str, str]] = Field(
        default_factory=dict, max_length=256, description="labels per instance type (an aws "
        "type of settings.instance_types, an ssh shape ssh:<gpus>x<model>), over labels")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "provider name")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_labels(v)

    @field_validator("instance_labels")
    @classmethod
    def _instance_labels(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for itype, labels in v.items():
            if len(labels) > MAX_LABELS:
                raise ValueError(f"{itype}: {len(labels)} labels; at most "
                                 f"{MAX_LABELS}")
            try:
                check_labels(labels)
            except ValueError as e:
                raise ValueError(f"{itype}: {e}") from None
        return v

    @field_validator("idle_timeouts")
    @classmethod
    def _idle_timeouts(cls, v: dict[str, float]) -> dict[str, float]:
        for key, seconds in v.items():
            if not 0 <= seconds <= 30 * 86_400:
                raise ValueError(f"idle_timeouts.{key}: {seconds:.0f} s is out of range; give a "
                                 "duration from 0 to 30d (e.g. 10m)")
        return v

    @model_validator(mode="after")
    def _settings(self) -> ProviderSpec:
        if self.kind == "static" and self.settings:
            raise ValueError("settings are for kind aws or ssh; a static provider lists its "
                             "node_groups instead (or set kind)")
        if self.kind in SETTINGS:
            try:
                SETTINGS[self.kind].model_validate(self.settings)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise ValueError(f"settings.{where}: {first['msg']} (kind {self.kind} needs "
                                 f"{NEEDS[self.kind]})") from None
        if self.max_nodes is not None and self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes {self.min_nodes} is above max_nodes {self.max_nodes}")
        self._type_keys("idle_timeouts", self.idle_timeouts, "use idle_timeout for all of them")
        self._type_keys("instance_labels", self.instance_labels, "use labels for all of them")
        self._merged_labels()
        return self

    def _merged_labels(self) -> None:
        """What an instance joins with (`labels_of`, `host_labels`) stays within MAX_LABELS:
        each part is bounded alone, and an agent given more is refused at join (its
        `--label` flags; `corral.agent.protocol.HostFacts`), so the autoscaler would rent
        instances that never join."""
        fix = f"at most {MAX_LABELS} labels after merging (a key in both counts once); drop some"
        for itype in self.instance_labels:
            n = len(self.labels_of(itype))
            if n > MAX_LABELS:
                raise ValueError(f"instance_labels.{itype}: {n} labels with the provider's; "
                                 f"{fix} from labels or instance_labels.{itype}")
        if self.kind != "ssh":
            return
        for i, host in enumerate(self.ssh.hosts):
            shape = ssh_instance_type(host.gpus, host.gpu_model)
            n = len(self.host_labels(host))
            if n > MAX_LABELS:
                raise ValueError(f"settings.hosts.{i} ({host.name}): {n} labels with the "
                                 f"provider's and instance_labels.{shape}; {fix} from the "
                                 "host's labels, the provider's or its shape's")

    def _type_keys(self, field: str, per_type: Mapping[str, object], instead: str) -> None:
        """Every key of `per_type` (idle_timeouts, instance_labels) names an instance type
        this provider rents."""
        if not per_type:
            return
        if self.kind == "static":
            raise ValueError(f"{field}: a static provider rents nothing; set it on a provider "
                             "of kind aws or ssh" + (" (a static node group has labels of its "
                             "own)" if field == "instance_labels" else ""))
        known = (self.aws.instance_types if self.kind == "aws" else
                 sorted({ssh_instance_type(h.gpus, h.gpu_model) for h in self.ssh.hosts}))
        for key in per_type:
            if key not in known:
                raise ValueError(f"{field}.{key}: not an instance type of provider "
                                 f"{self.name} (it rents {', '.join(known)}); name one of "
                                 f"those, or {instead}")

    def labels_of(self, instance_type: str,
                  own: Mapping[str, str] | None = None) -> dict[str, str]:
        """The labels an instance of `instance_type` (an aws type, an ssh shape) joins with:
        the provider's, that type's over them, `own` (an ssh host's) over both."""
        return {**self.labels, **self.instance_labels.get(instance_type, {}), **(own or {})}

    def host_labels(self, host: SshHostSettings) -> dict[str, str]:
        """The labels an ssh host of this provider joins with (its shape's, its own)."""
        return self.labels_of(ssh_instance_type(host.gpus, host.gpu_model), host.labels)

    @property
    def aws(self) -> AwsProviderSettings:
        return AwsProviderSettings.model_validate(self.settings)

    @property
    def ssh(self) -> SshProviderSettings:
        return SshProviderSettings.model_validate(self.settings)

    def nodes(self) -> list[Node]:
        out: list[Node] = []
        for g in self.node_groups:
            price = g.price_per_gpu_hour
            if price is None:
                price = self.prices.get(g.gpu_model, 0.0)
            for i in range(g.count):
                out.append(
                    Node(
                        id=f"{self.name}-{g.name}-{i}",
                        provider=self.name,
                        gpu_model=g.gpu_model,
                        gpu_count=g.gpus,
                        gpu_memory_mib=g.gpu_memory,
                        cpu_milli=g.cpu,
                        memory_mib=g.memory,
                        price_per_gpu_hour=price,
                        capacity_kind=g.capacity_kind or self.capacity_kind,
                        region=self.region,
                        zone=g.zone or self.zone,
                        rack=g.rack(i),
                        nvlink_domain=f"{g.name}-nvl{i // g.nvlink_domain_size}",
                        labels=tuple(sorted({**self.labels, **g.labels, **(
                            {LABEL_VENDOR: str(g.vendor)} if g.vendor else {})}.items())),
                    )
                )
        return out


class QueueSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    parent: str | None = None
    quota_gpus: float = Field(0, strict=True, ge=0, le=MAX_POOL_GPUS, allow_inf_nan=False)
    limit_gpus: float | None = Field(None, strict=True, ge=0, le=MAX_POOL_GPUS, allow_inf_nan=False)
    weight: float = Field(1.0, strict=True, gt=0, le=1e6, allow_inf_nan=False)
    priority: int = Field(0, strict=True, ge=-1_000_000, le=1_000_000)
    quota_by_model: dict[str, QuotaGpus] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "queue name")

    @model_validator(mode="after")
    def _limits(self) -> QueueSpec:
        if self.limit_gpus is not None and self.limit_gpus < self.quota_gpus:
            raise ValueError(
                f"limit_gpus ({self.limit_gpus:g}) is below quota_gpus "
                f"({self.quota_gpus:g}); raise the limit or lower the quota"
            )
        if sum(self.quota_by_model.values()) > self.quota_gpus + 1e-9:
            raise ValueError(
                "quota_by_model adds up to more than quota_gpus; it narrows part of "
                "the quota to models, so raise quota_gpus"
            )
        return self

    def to_core(self) -> Queue:
        return Queue(
            self.name,
            self.parent,
            self.quota_gpus,
            self.limit_gpus,
            self.weight,
            self.priority,
            tuple(sorted(self.quota_by_model.items())),
        )


class MigrationSpec(BaseModel):
    """`scheduler.migration`: move running, preemptible, checkpointing jobs to faster free
    accelerators when the time saved beats twice the restart cost (`corral.core.migration`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    restart_cost: DurationS = Field(
        60.0, description="what a move costs without progress (stop, checkpoint load, warm-up)")
    max_per_step: int = Field(1, strict=True, ge=0, le=1000, description="moves started per control step")
    min_interval: DurationS = Field(
        1800.0, description="a job moved less than this long ago is not moved again")

    @model_validator(mode="after")
    def _bounded(self) -> MigrationSpec:
        if self.enabled and self.max_per_step == 0:
            raise ValueError("max_per_step is 0 while enabled: set max_per_step to 1 or more, "
                             "or enabled: false")
        return self

    def to_core(self) -> MigrationRule:
        return MigrationRule(self.enabled, self.restart_cost, self.max_per_step,
                             self.min_interval)


class SchedulerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    migration: MigrationSpec = Field(
        default_factory=MigrationSpec,
        description="moving running jobs to faster accelerators; off unless enabled")

    scoring: dict[str, ScoringWeight] | None = None
    queue_scoring: dict[str, dict[str, ScoringWeight]] = Field(default_factory=dict)
    plugin_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="constructor arguments of score plugins, by name")
    reserve_after: DurationS = 300.0
    max_reservations: int = Field(1, strict=True, ge=0, le=10_000)
    max_reservation: DurationS = Field(3600.0, description="longest a reservation holds nodes")
    reservation_cooldown: DurationS = Field(
        600.0, description="how long an expired reservation's nodes stay free of it")
    backfill: bool = True
    consolidate: bool = True
    reclaim: bool = True
    preempt: bool = True
    max_eviction_attempts: int = Field(256, strict=True, ge=0, le=1_000_000)
    max_moves: int = Field(8, strict=True, ge=0, le=100_000)
    usage_weight: float = Field(0.0, strict=True, ge=0, le=1e6, allow_inf_nan=False)
    usage_half_life: DurationS = 7 * 24 * 3600.0
    share_units: dict[str, Annotated[float, Field(strict=True, gt=0, le=1e6, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="fair share in normalised GPU units per model, e.g. {V100: 1, K80: 0.3}: "
        "a K80 then counts as 0.3 GPUs when queues are ordered by their share (quotas stay in "
        "devices); unlisted models count 1")

    @field_validator("scoring")
    @classmethod
    def _scoring(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            _known_plugins(v)
        return v

    @field_validator("queue_scoring")
    @classmethod
    def _queue_scoring(cls, v: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for weights in v.values():
            _known_plugins(weights)
        return v

    @field_validator("plugin_params")
    @classmethod
    def _plugin_params(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each plugin built once with its parameters, so a wrong one is reported here rather
        than failing every scheduling cycle."""
        from corral.core.plugins import REGISTRY  # numpy: only when a file names plugins

        for name, params in v.items():
            if name not in REGISTRY:
                raise ValueError(f"plugin_params names {name!r}, which is not a score plugin; "
                                 f"choose from {sorted(REGISTRY)}")
            if "seed" in params:
                raise ValueError(f"plugin_params.{name}.seed is set by corral (the cycle's seed); "
                                 "remove it")
            try:
                REGISTRY[name](seed=0, **params)
            except (TypeError, ValueError) as exc:
                known = [p for p in inspect.signature(REGISTRY[name]).parameters if p != "seed"]
                raise ValueError(f"plugin_params.{name}: {exc}; its parameters are "
                                 f"{', '.join(known) or 'none'}") from None
        return v

    def to_core(self) -> SchedulerConfig:
        base = SchedulerConfig()
        return SchedulerConfig(
            scoring=self.scoring if self.scoring is not None else base.scoring,
            queue_scoring=self.queue_scoring,
            plugin_params=self.plugin_params,
            reserve_after_s=self.reserve_after,
            max_reservations=self.max_reservations,
            max_reservation_s=self.max_reservation,
            reservation_cooldown_s=self.reservation_cooldown,
            backfill=self.backfill,
            consolidate=self.consolidate,
            reclaim=self.reclaim,
            preempt=self.preempt,
            max_eviction_attempts=self.max_eviction_attempts,
            max_moves=self.max_moves,
            usage_weight=self.usage_weight,
            usage_half_life_s=self.usage_half_life,
            share_units=self.share_units,
        )


def _known_plugins(weights: dict[str, float]) -> None:
    from corral.core.plugins import REGISTRY  # numpy: only when a file names plugins

    unknown = sorted(set(weights) - set(REGISTRY))
    if unknown:
        raise ValueError(f"unknown score plugin(s) {unknown}; choose from {sorted(REGISTRY)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("score weights cannot be negative")


class SpotRiskSpec(BaseModel):
    """`autoscaler.spot_risk.<provider>`: how often that provider's spot instances are taken
    back and what a restart there costs (`corral.autoscale.spot.SpotRisk`). With it, work that
    says how it checkpoints (a workload's `checkpoint:`) stays on spot after an interruption
    while spot's price with interruptions counted beats on-demand (`corral.autoscale.spot`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mtbi: DurationS = Field(gt=0, description=(
        "mean time between interruptions of one spot instance (e.g. 6h; AWS's spot advisor "
        "gives a frequency band per instance type)"))
    notice: DurationS = Field(120.0, ge=0, le=3600, description=(
        "warning before an instance is taken back (EC2: 2m); work that writes a checkpoint "
        "within it loses nothing"))
    restart: DurationS = Field(ge=0, le=86_400, description=(
        "from an interruption to running again: a pass of the autoscaler, a new instance's "
        "provisioning, the checkpoint's load (e.g. 4m)"))


class AutoscalerSpec(BaseModel):
    """`autoscaler:` of the pool file: how the pool autoscaler (corral.autoscale.pool) paces
    itself over the renting providers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: DurationS = Field(30.0, ge=0.5, le=86_400, description="seconds between passes")
    idle_timeout: DurationS = Field(600.0, ge=0, le=30 * 86_400,
                                    description="idle this long, a rented node is drained")
    join_timeout: DurationS = Field(900.0, ge=1, le=86_400,
                                    description="not joined this long, an instance is returned")
    backoff_base: DurationS = Field(60.0, ge=0, le=86_400)
    backoff_max: DurationS = Field(3600.0, ge=0, le=30 * 86_400)
    spot_fallback_after: int = Field(2, strict=True, ge=1, le=1000, description=(
        "spot interruptions of one workload before it only gets on-demand capacity"))
    max_spend_per_hour: float | None = Field(None, strict=True, ge=0, le=1e9, allow_inf_nan=False)
    move_premium: float = Field(0.25, strict=True, ge=0, le=100, allow_inf_nan=False, description=(
        "after an interruption, the place that interrupted counts this much dearer (0.25: "
        "another place is taken when it costs at most 1.25x as much); 0 = no preference"))
    cancel_unneeded_after: DurationS | None = Field(60.0, description=(
        "an instance still on its way that no waiting work needs any more is returned once "
        "it has been on its way this long; null: kept until it joins and idles out"))
    max_instances_per_decision: int = Field(32, strict=True, ge=1, le=100_000, description=(
        "most instances one pass launches"))
    max_waiting_considered: int = Field(2000, strict=True, ge=1, le=1_000_000, description=(
        "waiting workloads (oldest, highest priority first) one pass rents for"))
    replace_min_saving: float | None = Field(0.3, strict=True, ge=0, le=100, allow_inf_nan=False,
                                             description=(
        "replace a node whose work (all preemptible, all on it) fits one instance costing at "
        "most (1 - this) of its price (Karpenter's consolidation); null (or 1 and over): never"))
    replace_min_age: DurationS = Field(1800.0, ge=0, le=30 * 86_400, description=(
        "a node launched less than this long ago is not replaced"))
    consolidate_min_age: DurationS | None = Field(1800.0, ge=0, le=30 * 86_400, description=(
        "empty a node launched at least this long ago whose work (all preemptible, all on it) "
        "fits the other nodes' free room, and return it (Karpenter's consolidation 'delete'); "
        "null: never"))
    spot_risk: dict[str, SpotRiskSpec] = Field(default_factory=dict, max_length=256, description=(
        "by provider name (one of `providers:` of kind aws): its spot interruptions' mean time "
        "between (mtbi), notice and restart. Interrupted work that declares its checkpoint: "
        "stays on spot there while spot x (1 + (lost + restart) / mtbi) is below on-demand "
        "(work without checkpoint: keeps spot_fallback_after); a provider not named here: its "
        "mtbi estimated from the interruptions corral recorded (prior: one in 6h)"))


class PoolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[ProviderSpec] = Field(default_factory=list)
    autoscaler: AutoscalerSpec = Field(default_factory=AutoscalerSpec)
    queues: list[QueueSpec] = Field(default_factory=list)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    # ledger hook: budgets and the price catalog (see corral.spec.ledger)
    ledger: LedgerSpec = Field(default_factory=LedgerSpec)
    prices: list[PriceSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> PoolSpec:
        no_duplicates([p.name for p in self.providers], "provider")
        no_duplicates([q.name for q in self.queues], "queue")
        names = {q.name for q in self.queues}
        for q in self.queues:
            if q.parent is not None and q.parent not in names:
                raise ValueError(
                    f"queue {q.name!r} has parent {q.parent!r}, which is not defined; "
                    "add that queue or remove parent"
                )
        for p in self.providers:
            no_duplicates([g.name for g in p.node_groups], f"node group of provider {p.name!r}")
        self._spot_risk_providers()
        return self

    def _spot_risk_providers(self) -> None:
        """Each `autoscaler.spot_risk` key names a provider of this file that rents: a typo
        would otherwise leave that provider's work on the plain count, silently."""
        kinds = {p.name: p.kind for p in self.providers}
        for name in self.autoscaler.spot_risk:
            if name not in kinds:
                raise ValueError(
                    f"autoscaler.spot_risk.{name}: no provider named {name!r} in providers: "
                    f"(there are {', '.join(sorted(kinds)) or 'none'}); name one of them")
            if kinds[name] != "aws":  # static nodes are listed, ssh hosts are never spot
                raise ValueError(
                    f"autoscaler.spot_risk.{name}: provider {name!r} is of kind "
                    f"{kinds[name]} and rents no spot capacity; set it on a provider of kind aws")

    def nodes(self) -> list[Node]:
        return [n for p in self.providers for n in p.nodes()]

    def queues_core(self) -> list[Queue]:
        return [q.to_core() for q in self.queues]
