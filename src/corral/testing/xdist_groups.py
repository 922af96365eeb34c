"""Which tests must run on the same pytest-xdist worker (`--dist loadgroup`).

Under xdist every worker is its own pytest session, so each session-scoped server (PostgreSQL,
Slurm) is started once per worker, in its own temp dir on its own kernel-given ports: that is
safe, and cheap. Two things are not, and this module keeps them on one worker by giving their
tests an ``xdist_group`` marker (xdist sends a group to one worker as a whole):

* **Ray** (group ``ray``). ``ray.cluster_utils.Cluster`` writes the cluster's address to
  ``/tmp/ray/ray_current_cluster``, one file for the machine, and removes it on shutdown, and
  ``ray.init(address="auto")`` (corral's Ray backend without an address) reads it. Two workers'
  clusters would overwrite and delete each other's address. A cluster also costs ~1 GiB and
  5-11 s to start, so one for the whole run is also the cheaper choice.
* **A module's own shared fixture** (group: the module's path). A module- or class-scoped fixture
  (a `corral up` server, a built wheel, a browser) is set up once per worker that runs any of the
  module's tests; spread over three workers it would start three times, and a fixture that
  writes into the source tree (`pip wheel` of the checkout builds in place) would race itself.

A test that already carries an ``xdist_group`` marker keeps it. Without xdist (or with another
``--dist`` mode) the markers do nothing. The idea is xdist's own (``--dist loadgroup``,
pytest-xdist >= 2.5); the Ray hazard is the one Ray's docs name for ``ray.init("auto")``.

**pytest 9.2 and xdist 3.8 (the versions here)**: xdist tells its scheduler a test's group by
writing ``<nodeid>@<group>`` into ``item._nodeid``, but pytest 9.2 keeps the node id in a
structured ``item._id``, so the write is lost and loadgroup silently spreads every group over
all workers (pytest-dev/pytest-xdist#1386, fix proposed in #1388, not released). ``mark_groups``
writes the suffix where pytest 9.2 reads it (`_with_group_suffix`), the same string xdist
meant to send; an xdist that does it itself is left alone (the suffix is already there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["RAY_FIXTURES", "RAY_GROUP", "SHARED_SCOPES", "group_of", "mark_groups"]

RAY_GROUP = "ray"
#: fixtures (corral.testing.fixtures) that attach to the one Ray cluster
RAY_FIXTURES = frozenset({"ray_cluster", "ray_driver"})
#: fixture scopes wider than a test and narrower than the session (one per worker is fine)
SHARED_SCOPES = frozenset({"module", "class", "package"})


def group_of(item: Any) -> str | None:
    """The xdist group ``item`` (a pytest Item) belongs to, or None to let it go anywhere.

    Ray first: a Ray test's module fixtures then also run once, on the Ray worker.
    """
    if item.get_closest_marker("xdist_group") is not None:
        return None  # the module chose its group itself
    names = set(item.fixturenames)
    if item.get_closest_marker("ray") is not None or names & RAY_FIXTURES:
        return RAY_GROUP
    if _uses_shared_fixture(item):
        return str(item.nodeid).split("::", 1)[0]
    return None


def mark_groups(items: Iterable[Any], marker: Any, *, suffix_ids: bool = False) -> int:
    """Add ``marker(group)`` (``pytest.mark.xdist_group``) to every item with a group; returns
    how many were marked. With ``suffix_ids`` (an xdist worker under ``--dist loadgroup``), also
    put every grouped item's ``@group`` into its node id, which is what xdist's scheduler reads
    (see the module doc: xdist 3.8's own write is lost on pytest 9.2)."""
    marked = 0
    for item in items:
        group = group_of(item)
        if group is not None:
            item.add_marker(marker(group))
            marked += 1
        if suffix_ids:
            _with_group_suffix(item)
    return marked


def _with_group_suffix(item: Any) -> None:
    # The group string as xdist's WorkerInteractor.pytest_collection_modifyitems builds it.
    names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                    for m in item.iter_markers("xdist_group")})
    if not names:
        return
    suffix = "@" + "_".join(names)
    if str(item.nodeid).endswith(suffix):
        return  # xdist (a fixed one) or an earlier call did it
    if hasattr(item, "_id"):  # pytest >= 9.2: the structured id is what `nodeid` reads
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(f"{item.nodeid}{suffix}")
    else:
        item._nodeid = f"{item.nodeid}{suffix}"


def _uses_shared_fixture(item: Any) -> bool:
    # name2fixturedefs holds every fixture the item closes over (autouse and indirect ones too);
    # the last definition of a name is the one that applies to this item.
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in SHARED_SCOPES
               for defs in info.name2fixturedefs.values())
