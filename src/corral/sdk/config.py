"""Which server and token a client uses, and the saved contexts (`corral login`).

The first source that names a server wins; the token comes with the server it was saved for:

    1. arguments (the CLI's --url / --token)
    2. CORRAL_URL, CORRAL_TOKEN
    3. a data dir named on purpose (CORRAL_DATA_DIR, the CLI's --data-dir): the `server.json`
       and `admin-token` that `corral up` wrote there
    4. a saved context: CORRAL_CONTEXT, else the config file's current one
    5. the data dir `.corral` in the working directory, if `corral up` ran there
    6. http://127.0.0.1:8765, no token

A context's token is only sent to that context's URL: `--url` to another server never carries
it along. The config file is `$XDG_CONFIG_HOME/corral/config.json` (default
`~/.config/corral/config.json`), written 0600 in a 0700 folder, because it holds tokens.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from corral.sdk.errors import CorralError

__all__ = ["Config", "ConfigError", "Context", "Resolved", "checked_url", "config_path",
           "from_data_dir", "load_config", "resolve", "save_config"]

# kept equal to corral.cli.defaults (the SDK may not import the CLI); a test holds them equal
DEFAULT_PORT = 8765
DEFAULT_DATA_DIR = ".corral"
SERVER_FILE = "server.json"
ADMIN_TOKEN_FILE = "admin-token"


class ConfigError(CorralError):
    """The config file cannot be read or names a context that is not there, or a server URL
    is not one."""


def checked_url(url: str, source: str = "") -> str:
    """`url` without its trailing slash, or a ConfigError that says how to write it. httpx
    would say `UnsupportedProtocol` at the first request (for `localhost:8765`, a URL without
    its scheme) or raise its InvalidURL from the client's constructor (`http://[::1`).
    `source`: where the URL came from, for the message (`--url`, `CORRAL_URL`, ...)."""
    where = f" (from {source})" if source else ""
    hint = f"write it like http://127.0.0.1:{DEFAULT_PORT} or https://corral.example.com"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not 0-65535
    except ValueError as e:
        raise ConfigError(f"{url!r}{where} is not a server URL ({e}); {hint}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{url!r}{where} is not a server URL; {hint}")
    return url.rstrip("/")


@dataclass(frozen=True)
class Context:
    name: str
    url: str
    token: str | None = field(default=None, repr=False)  # never in a repr or a log line


@dataclass
class Config:
    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    def context(self, name: str) -> Context:
        try:
            return self.contexts[name]
        except KeyError:
            known = ", ".join(sorted(self.contexts)) or "none; add one with `corral login URL`"
            raise ConfigError(f"no context named {name!r} (saved contexts: {known})") from None


class Resolved(NamedTuple):
    url: str
    token: str | None
    source: str  # where the URL came from: "arguments", "environment", "context NAME", ...


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "corral" / "config.json"


def load_config(path: Path | None = None) -> Config:
    """The saved contexts; an empty Config when there is no file yet."""
    path = path or config_path()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return Config()
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path} ({e}); fix or delete it and run `corral login` "
                          "again") from None
    try:
        contexts = {name: Context(name, str(c["url"]), c.get("token"))
                    for name, c in dict(raw.get("contexts") or {}).items()}
        current = raw.get("current")
    except (AttributeError, TypeError, KeyError) as e:
        raise ConfigError(f"{path} is not a corral config (contexts: {e}); fix or delete it "
                          "and run `corral login` again") from None
    return Config(current if current in contexts else None, contexts)


def save_config(config: Config, path: Path | None = None) -> Path:
    """Write atomically, readable by its owner only (it holds tokens)."""
    path = path or config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body: dict[str, Any] = {
        "current": config.current,
        "contexts": {c.name: {"url": c.url, **({"token": c.token} if c.token else {})}
                     for c in config.contexts.values()},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-")  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(body, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def from_data_dir(root: Path) -> tuple[str | None, str | None]:
    """The URL (`server.json`) and admin token that `corral up --data-dir ROOT` wrote there;
    None for what is not there."""
    url = None
    server_file = root / SERVER_FILE
    if server_file.is_file():
        try:
            url = str(json.loads(server_file.read_text())["url"])
        except (ValueError, KeyError, TypeError):
            url = None
    token_file = root / ADMIN_TOKEN_FILE
    token = token_file.read_text().strip() if token_file.is_file() else None
    return url, token or None


def _current_context(env: Mapping[str, str], config_file: Path | None) -> Context | None:
    config = load_config(config_file or config_path(env))
    name = env.get("CORRAL_CONTEXT") or config.current
    return config.context(name) if name else None


def resolve(url: str | None = None, token: str | None = None, *, data_dir: Path | None = None,
            environ: Mapping[str, str] | None = None,
            config_file: Path | None = None) -> Resolved:
    """The server and token to use, by the precedence in this module's docstring."""
    env = os.environ if environ is None else environ
    token = token or env.get("CORRAL_TOKEN") or None
    if url or env.get("CORRAL_URL"):
        source = "arguments" if url else "environment"
        url = url or env["CORRAL_URL"]
        return Resolved(url, token or _token_for(url, data_dir, env, config_file), source)
    chosen = data_dir or (Path(env["CORRAL_DATA_DIR"]) if env.get("CORRAL_DATA_DIR") else None)
    if chosen is not None:
        dd_url, dd_token = from_data_dir(chosen)
        if dd_url:
            return Resolved(dd_url, token or dd_token, f"data dir {chosen}")
    context = _current_context(env, config_file)
    if context is not None:
        return Resolved(context.url, token or context.token, f"context {context.name}")
    local = chosen or Path(DEFAULT_DATA_DIR)
    dd_url, dd_token = from_data_dir(local)
    return Resolved(dd_url or f"http://127.0.0.1:{DEFAULT_PORT}", token or dd_token,
                    f"data dir {local}" if dd_url else "default")


def _token_for(url: str, data_dir: Path | None, env: Mapping[str, str],
               config_file: Path | None) -> str | None:
    """A URL given without a token: a saved context's token for that same URL, else the data
    dir's admin token (as before contexts existed)."""
    try:
        config = load_config(config_file or config_path(env))
    except ConfigError:  # the URL was given outright: a broken config file does not stop it
        config = Config()
    for context in config.contexts.values():
        if context.url.rstrip("/") == url.rstrip("/") and context.token:
            return context.token
    root = data_dir or Path(env.get("CORRAL_DATA_DIR") or DEFAULT_DATA_DIR)
    return from_data_dir(root)[1]
