"""The `corral` command line (entry point: `corral.cli.main`)."""

import sys

# httpx's __init__ imports its own command line (httpx._main: click, rich.progress, pygments;
# ~40 ms of every command's start) inside try/except ImportError when click is installed.
# corral never runs httpx's command line, so it is marked absent before httpx is imported.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
