"""The entry point of a step beside a worker (`corral.backends.worker_step`), as
``python -I -S .../worker_step_main.py ARGS``: what `corral.backends.slurm_exec` runs in each
``srun`` step.

Why not ``python -m corral.backends.worker_step``: that runs the ``corral`` and
``corral.backends`` package ``__init__`` modules, which import every backend's interface
(~0.1 s of the ~0.14 s an exec took through the API on Slurm, measured with ``-X importtime``).
The step needs four modules that import only the standard library and each other, so both
packages are entered here as bare namespaces (their ``__path__`` only, as `local_runner_main`
does for the runner), and ``-S`` skips site-packages.
"""

import os
import sys
import types

_HERE = os.path.dirname(os.path.abspath(__file__))
for _name, _path in (("corral", os.path.dirname(_HERE)), ("corral.backends", _HERE)):
    _package = types.ModuleType(_name)
    _package.__path__ = [_path]
    sys.modules[_name] = _package

from corral.backends.worker_step import main  # noqa: E402  # the packages above first

sys.exit(main(mark=True))
