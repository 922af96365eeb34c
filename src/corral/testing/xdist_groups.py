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

**Items that share a node id.** pytest 9.2 builds a test's id from its ``originalname`` and its
callspec, not from its ``name``; Schemathesis (4.x) makes one item per API operation with the
operation in the name (``test_x[GET /v1/nodes]``) but no callspec, so all 83 of
``tests/api/test_fuzz.py`` had the one id ``tests/api/test_fuzz.py::test_x``. Serially that is
harmless; under ``--dist loadgroup`` xdist's scheduler keys its queue by node id, so 82 of them
were silently never run (3,803 results of 3,885 collected). ``distinct_ids`` gives such items
the id their name says; ``duplicate_ids`` is what is left for the caller to refuse.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = ["RAY_FIXTURES", "RAY_GROUP", "SHARED_SCOPES", "distinct_ids", "duplicate_ids",
           "group_of", "mark_groups", "prepare_items"]

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


def prepare_items(config: Any, items: list[Any]) -> None:
    """What tests/conftest.py's collection hook does where pytest-xdist is installed: distinct
    ids, a refusal of any id still shared (on a worker: xdist would run one of each and drop the
    rest without a word), then the groups and, under ``--dist loadgroup``, their id suffix."""
    import pytest

    distinct_ids(items)
    if hasattr(config, "workerinput") and (same := duplicate_ids(items)):
        raise pytest.UsageError(
            f"these node ids name more than one test, so pytest-xdist would run only one of "
            f"each: {same[:5]}; give each test a distinct id (pytest.param(id=...))")
    mark_groups(items, pytest.mark.xdist_group,
                suffix_ids=bool(config.getoption("loadgroup", False)))


def distinct_ids(items: Iterable[Any]) -> int:
    """Give every item that shares its node id with another the id its ``name`` says (the
    parent's id, ``::``, the name), where that differs; returns how many changed. Run before
    ``mark_groups`` (its ``@group`` suffix goes after the distinct id)."""
    items = list(items)
    seen = Counter(str(item.nodeid) for item in items)
    changed = 0
    for item in items:
        parent = getattr(item, "parent", None)
        if seen[str(item.nodeid)] < 2 or parent is None or not hasattr(item, "_id"):
            continue
        wanted = f"{parent.nodeid}::{item.name}"
        if wanted != str(item.nodeid):
            _set_nodeid(item, wanted)
            changed += 1
    return changed


def duplicate_ids(items: Iterable[Any]) -> list[str]:
    """The node ids more than one item has (xdist would run only one of each), sorted."""
    return sorted(nodeid for nodeid, n in Counter(str(i.nodeid) for i in items).items() if n > 1)


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
    _set_nodeid(item, f"{item.nodeid}{suffix}")


def _set_nodeid(item: Any, nodeid: str) -> None:
    """Make ``item.nodeid`` read ``nodeid``. pytest has no public way to do it: 9.2 keeps the id
    in ``item._id``, a ``NodeId`` (documented ``:meta private:``, from the private module
    ``_pytest.nodeid``, not exported by ``pytest``); older pytest in ``item._nodeid``, the field
    xdist writes. The new id is built by the class of the id already there (``NodeId.parse``),
    so nothing imports a private module and a pytest that moves the class still works."""
    current = getattr(item, "_id", None)
    if current is not None and hasattr(type(current), "parse"):  # pytest >= 9.2
        item._id = type(current).parse(nodeid)
    else:
        item._nodeid = nodeid


def _uses_shared_fixture(item: Any) -> bool:
    # name2fixturedefs holds every fixture the item closes over (autouse and indirect ones too);
    # the last definition of a name is the one that applies to this item.
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in SHARED_SCOPES
               for defs in info.name2fixturedefs.values())
