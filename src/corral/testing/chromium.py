"""Headless Chromium for the dashboard tests: Debian's /usr/bin/chromium, driven by Playwright.

Playwright is told where the browser is (``executable_path``), so it never downloads one. The
flags make Chromium behave in a sandboxed CI container: no setuid sandbox (we may be root, and
containers lack the namespaces it needs), no GPU, no network chatter of its own (component
updates, sync, QUIC, background fetches), and /tmp instead of a small /dev/shm.

    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(**playwright_launch_kwargs())

For launching the binary directly (chromedriver, CDP, a plain ``--screenshot``), use
``chromium_command(url, user_data_dir)``; Playwright instead makes its own fresh profile dir, and
rejects a ``--user-data-dir`` flag, so its kwargs leave that out.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from corral.testing.errors import HarnessUnavailable

__all__ = [
    "CHROMIUM_FLAGS",
    "chromium_command",
    "find_chromium",
    "playwright_launch_kwargs",
    "require_playwright",
]

ENV_OVERRIDE = "CORRAL_CHROMIUM"
_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")

# Flags for every launch (Playwright adds --headless itself; chromium_command adds it).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm is 64 MiB in many containers
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium() -> str:
    """Path of the Chromium binary: $CORRAL_CHROMIUM, /usr/bin/chromium, or chromium on PATH.

    Raises HarnessUnavailable naming the package to install.
    """
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        if os.access(override, os.X_OK):
            return override
        raise HarnessUnavailable(f"${ENV_OVERRIDE}={override} is not an executable file")
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise HarnessUnavailable(
        "chromium not found (looked for /usr/bin/chromium and chromium on PATH); install "
        "Debian's chromium (scripts/install-system-deps) or set $CORRAL_CHROMIUM"
    )


def require_playwright() -> None:
    """Raise HarnessUnavailable when the playwright package is not installed."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise HarnessUnavailable(
            "the playwright package is not installed; pip install -e '.[dev]' "
            "(its own browser download is not needed: Debian's chromium is used)"
        ) from exc


def chromium_command(user_data_dir: Path, *extra: str) -> list[str]:
    """Full argv for running Chromium headless directly, with a fresh profile in
    ``user_data_dir`` (create it per launch: profiles are not shareable between processes)."""
    return [
        find_chromium(),
        "--headless",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={user_data_dir}",
        *extra,
    ]


def playwright_launch_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``playwright.chromium.launch`` that use Debian's Chromium.

    ``overrides`` are merged last (e.g. ``slow_mo=100``); ``args`` given there are appended to
    the default flags rather than replacing them.
    """
    extra_args = list(overrides.pop("args", []))
    kwargs: dict[str, Any] = {
        "executable_path": find_chromium(),
        "headless": True,
        "args": [*CHROMIUM_FLAGS, *extra_args],
        "chromium_sandbox": False,
    }
    kwargs.update(overrides)
    return kwargs
