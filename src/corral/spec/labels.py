"""Which node labels and node selectors a spec may hold.

Labels follow Kubernetes' label syntax, so a label copied from a cluster works unchanged and one
written here can be copied back: a key is an optional DNS-subdomain prefix and `/`, then a name
of at most 63 characters (letters, digits, `-`, `_`, `.`, starting and ending with a letter or
digit); a value is empty or a name. The `corral.dev/` prefix is corral's own: every node carries
the built-in labels below without being given them (`corral.core.model.Node.label`), so a pool
file may not set them and a selector may only name those that exist.

    corral.dev/provider   the provider's name            aws-use1
    corral.dev/region     its region, across providers   us-east-1
    corral.dev/zone       the node's zone                us-east-1a
    corral.dev/rack       the node's rack                p5-rack0
    corral.dev/capacity   owned | on-demand | spot       spot
    corral.dev/gpu-model  the GPU model                  H100
    corral.dev/vendor     who makes it (nvidia | amd | intel | aws | google): a node group's
                          `vendor`, else read from the model's name (`corral.core.vendors`)
"""

from __future__ import annotations

import re
from typing import Final

from corral.core.model import (
    LABEL_CAPACITY,
    LABEL_CONTAINER_RUNTIME,
    LABEL_MODEL,
    LABEL_PROVIDER,
    LABEL_RACK,
    LABEL_REGION,
    LABEL_VENDOR,
    LABEL_ZONE,
    CapacityKind,
)
from corral.core.vendors import Vendor

__all__ = ["AGENT_OWN", "BUILTIN", "MAX_HOST_LABELS", "MAX_LABELS", "RESERVED_PREFIX",
           "check_labels", "check_selector"]

#: per node group, per selector, and per node once its pool file labels are merged (a provider's,
#: an instance type's, an ssh host's own: `corral.spec.pool.ProviderSpec.labels_of`)
MAX_LABELS: Final = 64
#: the labels of corral's own an agent adds to those it is given (`corral.agent.host`)
AGENT_OWN: Final = frozenset({LABEL_VENDOR, LABEL_CONTAINER_RUNTIME})
#: what a joining host may declare in all (`corral.agent.protocol.HostFacts.labels`): its
#: merged labels and the agent's own, so every labelling the pool file accepts can join
MAX_HOST_LABELS: Final = MAX_LABELS + len(AGENT_OWN)
RESERVED_PREFIX: Final = "corral.dev/"
BUILTIN: Final = frozenset({LABEL_PROVIDER, LABEL_REGION, LABEL_ZONE, LABEL_RACK, LABEL_CAPACITY,
                            LABEL_MODEL, LABEL_VENDOR})

# fullmatch, never match with `$` (it also matches before a trailing newline)
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_NAME_RULE = ("at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter "
              "or digit")


def key_problem(key: str) -> str | None:
    """What is wrong with a label key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not _subdomain(prefix):
        return (f"label key {key[:80]!r}: the prefix before '/' must be a DNS subdomain "
                "(lowercase letters, digits, '-' and '.', at most 253 characters), such as "
                "example.com")
    if not _NAME.fullmatch(name):
        return f"label key {key[:80]!r}: the name{' after /' if slash else ''} must be {_NAME_RULE}"
    return None


def value_problem(key: str, value: str) -> str | None:
    if value and not _NAME.fullmatch(value):
        return f"the value of {key[:80]!r}, {value[:80]!r}, must be empty or {_NAME_RULE}"
    return None


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """A node group's labels: valid keys and values, none of corral's own (nodes carry those
    already, and a given one would be hidden by the built-in)."""
    for k, v in labels.items():
        problem = key_problem(k) or value_problem(k, v)
        if problem:
            raise ValueError(problem)
        if k.startswith(RESERVED_PREFIX):
            raise ValueError(f"{k!r}: labels under {RESERVED_PREFIX} are set by corral from the "
                             "provider and node group (region, zone, racks, capacity_kind); set "
                             "those fields instead, or use a prefix of your own")
    return labels


def check_selector(selector: dict[str, str]) -> dict[str, str]:
    """A workload's node selector: valid labels; corral's own only where they exist, and
    `corral.dev/capacity` only with a kind of capacity (a selector that can never match is a
    mistake to report now, not a workload that waits forever)."""
    for k, v in selector.items():
        problem = key_problem(k) or value_problem(k, v)
        if problem:
            raise ValueError(problem)
        if k.startswith(RESERVED_PREFIX) and k not in BUILTIN:
            raise ValueError(f"{k!r} is not a label corral sets; the built-in labels are "
                             f"{', '.join(sorted(BUILTIN))}")
        kinds = [str(c) for c in CapacityKind]
        if k == LABEL_CAPACITY and v not in kinds:
            raise ValueError(f"{LABEL_CAPACITY} is one of {', '.join(kinds)}, not {v[:80]!r} "
                             "(the capacity field says the same more plainly)")
        vendors = [str(x) for x in Vendor]
        if k == LABEL_VENDOR and v not in vendors:
            raise ValueError(f"{LABEL_VENDOR} is one of {', '.join(vendors)}, not {v[:80]!r}")
    return selector


def _subdomain(prefix: str) -> bool:
    return 0 < len(prefix) <= 253 and all(_DNS_LABEL.fullmatch(p) for p in prefix.split("."))
