"""corral.core stays pure: no I/O layer imports, no clock, no unseeded randomness; its public
surface is pinned so that a change to it is a deliberate one.

The check reads each module's AST and resolves every name through the module's imports, so
`import time as t; t.time()`, `from time import perf_counter` and `from datetime import
datetime; datetime.now()` are all seen as the clock they are. `test_checker_catches` pins the
checker itself on small sources, good and bad.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import corral.core

CORE = Path(corral.core.__file__).parent
ALLOWED_TOP = {"numpy", "scipy", "corral"} | set(sys.stdlib_module_names)
# I/O, threads, the clock (`time` has nothing else a policy needs), OS entropy, dynamic imports
FORBIDDEN_MODULES = {"os", "subprocess", "socket", "sqlite3", "threading", "asyncio", "shutil", "pathlib",
                     "io", "time", "secrets", "importlib"}
#: reads the clock or draws from an unseeded generator, whatever the arguments
FORBIDDEN = {
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today",
    "random.SystemRandom", "uuid.uuid1", "uuid.uuid4",
}
#: constructors of generators: fine with a seed, unseeded without one (or with None)
NEEDS_SEED = {"random.Random", "numpy.random.default_rng", "numpy.random.RandomState",
              "numpy.random.SeedSequence", "numpy.random.PCG64", "numpy.random.PCG64DXSM",
              "numpy.random.MT19937", "numpy.random.Philox", "numpy.random.SFC64"}
#: the rest of `random.*` and `numpy.random.*` is the process-wide generator
GLOBAL_GENERATORS = ("random.", "numpy.random.")
ALLOWED_GENERATOR_NAMES = NEEDS_SEED | {"numpy.random.Generator", "numpy.random.BitGenerator"}


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> the qualified name it stands for, from every import in the module."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                # `import numpy.random` binds `numpy`; `import numpy.random as npr` binds npr
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _qualified(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """`t.time` -> "time.time" when `t` is `import time as t`; None unless rooted in an import."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])


def _unseeded(call: ast.Call) -> bool:
    args = [*call.args, *(k.value for k in call.keywords)]
    return not args or all(isinstance(a, ast.Constant) and a.value is None for a in args)


def _import_violations(node: ast.Import | ast.ImportFrom, where: str) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.level:
        return []  # relative: inside the package
    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    out = []
    for name in names:
        top = name.split(".")[0]
        if top not in ALLOWED_TOP:
            out.append(f"{where} imports {name}")
        if top in FORBIDDEN_MODULES:
            out.append(f"{where} imports {name} (I/O, clock or entropy)")
        if top == "corral" and not name.startswith("corral.core"):
            out.append(f"{where} imports upward: {name}")
    if isinstance(node, ast.ImportFrom):  # `from random import shuffle` is the use itself
        out += [v for a in node.names for v in _name_violations(f"{node.module}.{a.name}", where)]
    return out


def _name_violations(name: str, where: str) -> list[str]:
    if name in FORBIDDEN:
        return [f"{where} uses {name}: pass time or a seeded generator in"]
    if name.startswith(GLOBAL_GENERATORS) and name not in ALLOWED_GENERATOR_NAMES:
        return [f"{where} uses {name}: the process-wide generator"]
    return []


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Every impure import, name or call in `source`, as "file:line what"."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    out: list[str] = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            out += _import_violations(node, where)
        elif isinstance(node, ast.Attribute):  # called or not: `clock = datetime.now` counts
            name = _qualified(node, aliases)
            out += _name_violations(name, where) if name else []
        elif isinstance(node, ast.Call):
            name = _qualified(node.func, aliases)
            if name in NEEDS_SEED and _unseeded(node):
                out.append(f"{where} calls {name} without a seed")
            if isinstance(node.func, ast.Name) and node.func.id in {"open", "print", "input", "__import__"}:
                out.append(f"{where} calls {node.func.id}")
    return out


FILES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORE)) for p in FILES])
def test_core_module_is_pure(path: Path) -> None:
    assert violations(path.read_text(), path.name) == []


BAD = {
    "time-module": "import time\nnow = time.time()",
    "time-alias": "import time as t\nnow = t.time()",
    "from-time": "from time import perf_counter\nstart = perf_counter()",
    "from-time-alias": "from time import monotonic as clock\nx = clock()",
    "datetime-class-now": "from datetime import datetime\nx = datetime.now()",
    "datetime-module-now": "import datetime\nx = datetime.datetime.now()",
    "datetime-alias-utcnow": "from datetime import datetime as dt\nx = dt.utcnow()",
    "date-today": "import datetime as d\nx = d.date.today()",
    "clock-as-value": "from datetime import datetime\nclock = datetime.now",
    "random-global": "import random\nx = random.random()",
    "random-from-global": "from random import shuffle\nshuffle([1, 2])",
    "random-unseeded": "import random\nrng = random.Random()",
    "random-none-seed": "import random\nrng = random.Random(None)",
    "random-from-unseeded": "from random import Random\nrng = Random()",
    "random-system": "import random\nrng = random.SystemRandom(1)",
    "numpy-default-rng-unseeded": "import numpy as np\nrng = np.random.default_rng()",
    "numpy-default-rng-none": "import numpy as np\nrng = np.random.default_rng(seed=None)",
    "numpy-from-default-rng": "from numpy.random import default_rng\nrng = default_rng()",
    "numpy-random-module-alias": "import numpy.random as npr\nrng = npr.default_rng()",
    "numpy-global": "import numpy as np\nx = np.random.rand(3)",
    "numpy-global-from": "from numpy.random import permutation\nx = permutation(3)",
    "numpy-bitgen-unseeded": "import numpy as np\nrng = np.random.Generator(np.random.PCG64())",
    "numpy-legacy-unseeded": "import numpy as np\nrng = np.random.RandomState()",
    "uuid4": "import uuid\nx = uuid.uuid4()",
    "secrets": "import secrets\nx = secrets.token_hex()",
    "dynamic-import": "import importlib\nm = importlib.import_module('os')",
    "builtin-import": "m = __import__('os')",
    "io": "from pathlib import Path",
    "print": "print('x')",
    "upward": "from corral.store import db",
}
GOOD = {
    "seeded-random": "import random\nrng = random.Random(seed)",
    "seeded-numpy": "import numpy as np\nrng = np.random.default_rng(seed)\nx = rng.random(3)",
    "seeded-numpy-keyword": "import numpy as np\nrng = np.random.default_rng(seed=7)",
    "seeded-bitgen": "import numpy as np\nrng = np.random.Generator(np.random.PCG64(7))",
    "generator-method-named-random": "def f(self):\n    return self._rng.random(3)",
    "datetime-arithmetic": "from datetime import timedelta\nx = timedelta(seconds=3)",
    "local-named-now": "def f(now):\n    return now + 1",
    "local-time-attribute": "def f(w):\n    return w.time.now",
}


@pytest.mark.parametrize("source", BAD.values(), ids=BAD.keys())
def test_checker_catches(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize("source", GOOD.values(), ids=GOOD.keys())
def test_checker_allows(source: str) -> None:
    assert violations(source) == []


def test_public_surface_is_pinned() -> None:
    assert sorted(corral.core.__all__) == sorted([
        "DEFAULT_SCORING", "MILLI_PER_GPU", "CapacityKind", "ClusterState", "Eviction", "Health", "Node",
        "Placement", "Plan", "Queue", "QueueUsage", "Reason", "Reservation", "SchedulerConfig",
        "TopologyLevel", "WorkerAssignment", "WorkerResources", "Workload", "WorkloadKind",
        "WorkloadState", "schedule"])
    for name in corral.core.__all__:
        assert hasattr(corral.core, name)


def test_fairshare_doc_examples_hold() -> None:
    import doctest

    from corral.core import fairshare

    result = doctest.testmod(fairshare)
    assert result.attempted >= 5 and result.failed == 0
