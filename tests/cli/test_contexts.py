"""`corral login` and `corral context ls|use|rm`: a saved server and token reach every client
command; the file is its owner's only; the token is never printed back; a broken config file
or an unknown context is one clear message."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .server_proc import CorralServer

pytestmark = pytest.mark.slow  # a real `corral up` and CLI processes: ~20 s

PY = sys.executable
SECRET = "crl_not-a-real-token-0123456789"


def _env(tmp_path: Path) -> dict[str, str]:
    """No CORRAL_* from the outer environment: only the config file can name a server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return {**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "120"}


def _cli(tmp_path: Path, *args: str, stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "corral.cli.main", *args], env=env or _env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, input=stdin)


def _config(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "corral" / "config.json"


def test_login_saves_a_private_file_and_never_prints_the_token(tmp_path: Path) -> None:
    r = _cli(tmp_path, "login", "http://10.0.0.5:8765/", "--token", SECRET, "--no-verify")
    assert r.returncode == 0, r.stderr
    assert "10.0.0.5:8765" in r.stdout
    path = _config(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = json.loads(path.read_text())
    assert saved == {"current": "10.0.0.5:8765", "contexts": {
        "10.0.0.5:8765": {"url": "http://10.0.0.5:8765", "token": SECRET}}}
    for args in (["context", "ls"], ["context", "ls", "-o", "json"],
                 ["context", "ls", "-o", "plain"]):
        shown = _cli(tmp_path, *args)
        assert shown.returncode == 0, shown.stderr
        assert SECRET not in shown.stdout + shown.stderr
    assert SECRET not in r.stdout + r.stderr
    assert "plain http" in r.stderr  # a token in clear to another host is said
    local = _cli(tmp_path, "login", "http://127.0.0.1:8765", "--token", SECRET, "--no-verify")
    assert local.returncode == 0 and "plain http" not in local.stderr
    shadowed = _cli(tmp_path, "context", "ls",
                    env={**_env(tmp_path), "CORRAL_URL": "http://other:1"})
    assert "CORRAL_URL set in this shell" in " ".join(shadowed.stderr.split())


def test_token_from_stdin_and_contexts_switch_and_go(tmp_path: Path) -> None:
    assert _cli(tmp_path, "login", "https://a.example.com", "--token", "-", "--name", "a",
                "--no-verify", stdin=SECRET + "\n").returncode == 0
    assert _cli(tmp_path, "login", "https://b.example.com", "--token", "tb", "--name", "b",
                "--no-verify").returncode == 0
    listed = json.loads(_cli(tmp_path, "context", "ls", "-o", "json").stdout)
    assert [(c["name"], c["current"]) for c in listed] == [("a", False), ("b", True)]
    assert json.loads(_config(tmp_path).read_text())["contexts"]["a"]["token"] == SECRET
    assert _cli(tmp_path, "context", "use", "a").returncode == 0
    assert _cli(tmp_path, "context", "ls", "-o", "ids").stdout.split() == ["a", "b"]
    assert json.loads(_config(tmp_path).read_text())["current"] == "a"
    gone = _cli(tmp_path, "context", "rm", "a")
    assert gone.returncode == 0 and "no context is current" in gone.stdout
    assert json.loads(_config(tmp_path).read_text()) == {
        "current": None, "contexts": {"b": {"url": "https://b.example.com", "token": "tb"}}}


@pytest.mark.parametrize(("args", "says"), [
    (["context", "use", "nope"], "no context named 'nope' (saved contexts: none"),
    (["context", "rm", "nope"], "no context named 'nope'"),
    (["login", "corral.example.com", "--token", "t", "--no-verify"], "is not a server URL"),
    (["login", "http://x:1", "--token", "", "--no-verify"], "the token is empty"),
    # the API's bounds, said before any request (the server's answer named `limit`, not -n)
    (["ls", "-n", "0", "--url", "http://127.0.0.1:9"], "Invalid value for '--limit' / '-n'"),
], ids=["use-unknown", "rm-unknown", "url-without-scheme", "empty-token", "ls-limit-0"])
def test_mistakes_are_one_clear_message(tmp_path: Path, args: list[str], says: str) -> None:
    r = _cli(tmp_path, *args)
    assert r.returncode != 0
    assert says in " ".join((r.stdout + r.stderr).split())
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("args", "env", "says"), [
    (["ls", "--url", "localhost:8765"], {}, "'localhost:8765' (from --url or CORRAL_URL) is "
     "not a server URL; write it like http://127.0.0.1:8765"),
    (["queues", "--url", "http://[::1"], {}, "'http://[::1' (from --url or CORRAL_URL) is not a "
     "server URL (Invalid IPv6 URL)"),
    (["describe", "x", "--url", "http://h:99999"], {}, "(Port out of range 0-65535)"),
    (["ls"], {"CORRAL_URL": "ftp://h"}, "'ftp://h' (from --url or CORRAL_URL) is not a server"),
    (["login", "http://[::1", "--token", "t", "--no-verify"], {}, "Invalid IPv6 URL"),
], ids=["no-scheme", "bad-ipv6", "bad-port", "env-ftp", "login-bad-ipv6"])
def test_a_server_url_that_is_none_says_how_to_write_it(tmp_path: Path, args: list[str],
                                                       env: dict[str, str], says: str) -> None:
    """Issue 14: a URL without its scheme said `cannot reach ... (UnsupportedProtocol)`, and
    one that does not parse (`http://[::1`) was a traceback."""
    r = _cli(tmp_path, *args, env={**_env(tmp_path), **env})
    assert r.returncode in (1, 2), r.stderr
    assert says in " ".join(r.stderr.replace("│", " ").split()), r.stderr
    assert "Traceback" not in r.stderr


class _WebPage(http.server.BaseHTTPRequestHandler):
    """Another web server on the port the user named: a page for every request."""

    def do_GET(self) -> None:
        body = b"<html>sign in</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_url_that_is_another_web_server_is_one_clear_message(tmp_path: Path) -> None:
    """It was the JSON decoder's traceback (issue 14)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = _cli(tmp_path, "ls", "--url", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 1 and "Traceback" not in r.stderr
    says = " ".join(r.stderr.split())
    assert "answered GET /v1/workloads with something that is not corral's API (not JSON: " \
           "text/html); is it the corral server (--url, CORRAL_URL)" in says


def test_login_without_a_token_or_a_terminal_says_how_to_give_one(tmp_path: Path) -> None:
    """A script's `corral login URL` (stdin not a terminal) was getpass's warning and
    `Aborted.`; it names the two ways to pass the token."""
    r = _cli(tmp_path, "login", "http://127.0.0.1:9", "--no-verify", stdin="")
    assert r.returncode == 2 and not _config(tmp_path).exists()
    says = " ".join(r.stderr.replace("│", " ").split())
    assert "no token given and no terminal to ask on: pass --token TOKEN or --token -" in says


def test_a_broken_config_file_is_named_with_the_fix(tmp_path: Path) -> None:
    _config(tmp_path).parent.mkdir(parents=True)
    _config(tmp_path).write_text("{not json")
    r = _cli(tmp_path, "queues")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    message = " ".join(r.stderr.split())
    assert str(_config(tmp_path)) in message and "fix or delete it" in message


def test_an_unknown_corral_context_is_refused(tmp_path: Path) -> None:
    r = _cli(tmp_path, "queues", env={**_env(tmp_path), "CORRAL_CONTEXT": "prod"})
    assert r.returncode == 1 and "no context named 'prod'" in r.stderr


def test_login_checks_the_token_and_client_commands_use_the_context(
        tmp_path: Path, server: CorralServer) -> None:
    refused = _cli(tmp_path, "login", server.url, "--token", "crl_wrong")
    assert refused.returncode == 1
    assert not _config(tmp_path).exists()  # nothing saved for a token the server refused
    r = _cli(tmp_path, "login", server.url, "--token", server.token, "--name", "local")
    assert r.returncode == 0, r.stderr
    assert "as admin" in r.stdout and server.token not in r.stdout + r.stderr
    queues = _cli(tmp_path, "queues", "-o", "ids")  # no --url, no env: the current context
    assert queues.returncode == 0, queues.stderr
    assert "default" in queues.stdout.split()
    # a flag beats the context: this port has no server, so the command fails to connect
    other = _cli(tmp_path, "queues", "--url", "http://127.0.0.1:9")
    assert other.returncode == 1 and "127.0.0.1:9" in other.stderr


def test_login_from_a_data_dir_saves_its_server_and_admin_token(
        tmp_path: Path, server: CorralServer) -> None:
    """Issue 14: after `corral up --data-dir X` (not ./.corral), one `corral login --data-dir X`
    and every client command reaches it, from any folder, without flags."""
    r = _cli(tmp_path, "login", "--data-dir", str(server.data_dir), "--name", "mine")
    assert r.returncode == 0, r.stderr
    assert "as admin" in r.stdout and server.token not in r.stdout + r.stderr
    saved = json.loads(_config(tmp_path).read_text())
    assert saved["contexts"]["mine"] == {"url": server.url, "token": server.token}
    queues = _cli(tmp_path, "queues", "-o", "ids")
    assert queues.returncode == 0, queues.stderr
    assert "default" in queues.stdout.split()


@pytest.mark.parametrize(("args", "says"), [
    (["login", "--no-verify"], "give a server URL or --data-dir DIR"),
    (["login", "http://x:1", "--data-dir", ".", "--no-verify"], "give a server URL or --data-dir"),
    (["login", "--data-dir", "nowhere", "--no-verify"],
     "nowhere has no server.json: is `corral up --data-dir nowhere` running?"),
], ids=["neither", "both", "no-server-there"])
def test_login_needs_one_server(tmp_path: Path, args: list[str], says: str) -> None:
    r = _cli(tmp_path, *args)
    assert r.returncode == 2 and says in " ".join(r.stderr.replace("│", " ").split()), r.stderr


def test_a_data_dir_flag_reaches_its_server_from_anywhere(tmp_path: Path,
                                                         server: CorralServer) -> None:
    """`corral --data-dir DIR CMD`: the server `corral up --data-dir DIR` runs, with its admin
    token, without a context or an environment variable (issue 14)."""
    r = _cli(tmp_path, "--data-dir", str(server.data_dir), "queues", "-o", "ids")
    assert r.returncode == 0, r.stderr
    assert "default" in r.stdout.split()
