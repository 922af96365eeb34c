"""The worker supervisor's entry point: ``python -I -S .../local_runner_main.py ARGS`` runs
`corral.backends.local_runner`'s main (see `local_runner.runner_argv`).

Python compiles the script it is given on every start but loads an imported module from its
cached bytecode, so this file stays a few lines and imports the runner from its own directory
(no site-packages and no corral package ``__init__`` behind it): the same source and the same
``__pycache__`` entry as ``corral.backends.local_runner``. ``-I`` leaves this directory off
``sys.path`` (safe_path), so it is put there by hand.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_runner import main  # type: ignore[import-not-found]  # path above

sys.exit(main())
