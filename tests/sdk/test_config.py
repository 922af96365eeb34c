"""Which server and token a client uses (corral.sdk.config): arguments > environment > a data dir
named on purpose > the current context > ./.corral > the default port; a context's token goes
only to its own URL; `Client.from_env()` follows the same rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.cli import defaults
from corral.sdk import Client
from corral.sdk import config as C


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a `corral up` data dir, and a config with a current context."""
    monkeypatch.chdir(tmp_path)
    for name in ("CORRAL_URL", "CORRAL_TOKEN", "CORRAL_DATA_DIR", "CORRAL_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    local = tmp_path / ".corral"
    local.mkdir()
    (local / "server.json").write_text(json.dumps({"url": "http://127.0.0.1:7001"}))
    (local / "admin-token").write_text("local-admin\n")
    C.save_config(C.Config("prod", {
        "prod": C.Context("prod", "https://prod.example.com", "prod-token"),
        "lab": C.Context("lab", "http://lab:8765", "lab-token")}))
    return tmp_path


def _write_dir(root: Path, url: str, token: str) -> Path:
    root.mkdir()
    (root / "server.json").write_text(json.dumps({"url": url}))
    (root / "admin-token").write_text(token)
    return root


def test_the_current_context_beats_the_local_data_dir(home: Path) -> None:
    assert C.resolve() == ("https://prod.example.com", "prod-token", "context prod")


def test_corral_context_picks_another_context(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_CONTEXT", "lab")
    assert C.resolve()[:2] == ("http://lab:8765", "lab-token")


def test_arguments_beat_everything(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_URL", "http://env:1")
    monkeypatch.setenv("CORRAL_TOKEN", "env-token")
    assert C.resolve("http://arg:2", "arg-token") == ("http://arg:2", "arg-token", "arguments")


def test_the_environment_beats_the_context(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_URL", "http://env:1")
    monkeypatch.setenv("CORRAL_TOKEN", "env-token")
    assert C.resolve() == ("http://env:1", "env-token", "environment")


def test_a_context_token_goes_only_to_its_own_url(home: Path) -> None:
    assert C.resolve("http://lab:8765/").token == "lab-token"
    # another server: never the contexts' tokens; the local data dir's admin token as before
    assert C.resolve("http://elsewhere:1").token == "local-admin"


def test_a_data_dir_named_on_purpose_beats_the_context(home: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = _write_dir(home / "other", "http://127.0.0.1:7002", "other-admin")
    monkeypatch.setenv("CORRAL_DATA_DIR", str(other))
    assert C.resolve()[:2] == ("http://127.0.0.1:7002", "other-admin")
    assert C.resolve(data_dir=home / ".corral")[:2] == ("http://127.0.0.1:7001", "local-admin")


def test_without_a_context_the_local_data_dir_then_the_default_port(home: Path) -> None:
    C.save_config(C.Config())
    assert C.resolve()[:2] == ("http://127.0.0.1:7001", "local-admin")
    (home / ".corral" / "server.json").unlink()
    (home / ".corral" / "admin-token").unlink()
    assert C.resolve() == (f"http://127.0.0.1:{defaults.DEFAULT_PORT}", None, "default")


def test_from_env_uses_the_same_rules(home: Path) -> None:
    with Client.from_env() as c:
        assert c.url == "https://prod.example.com"
        assert c._http.headers["Authorization"] == "Bearer prod-token"
    with Client.from_env(url="http://arg:2", token="t") as c:
        assert c.url == "http://arg:2"


def test_a_context_repr_hides_its_token() -> None:
    assert "secret" not in repr(C.Context("x", "http://x", "secret"))


@pytest.mark.parametrize("body", ["{not json", '{"contexts": {"a": {}}}', '{"contexts": 3}'],
                         ids=["not-json", "context-without-url", "contexts-not-a-map"])
def test_a_broken_config_names_the_file_and_the_fix(tmp_path: Path, body: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(body)
    with pytest.raises(C.ConfigError) as e:
        C.load_config(path)
    assert str(path) in e.value.message and "fix or delete it" in e.value.message


def test_the_sdk_and_the_cli_agree_on_the_data_dir() -> None:
    assert C.DEFAULT_PORT == defaults.DEFAULT_PORT
    dd = defaults.DataDir(Path(C.DEFAULT_DATA_DIR))
    assert dd.server_file.name == C.SERVER_FILE and dd.admin_token.name == C.ADMIN_TOKEN_FILE


def test_a_url_given_outright_is_not_stopped_by_a_broken_config(home: Path) -> None:
    C.config_path().write_text("{not json")
    assert C.resolve("http://elsewhere:1") == ("http://elsewhere:1", "local-admin", "arguments")
    with pytest.raises(C.ConfigError):
        C.resolve()  # the config was needed: its fault is said


@pytest.mark.parametrize(("url", "says"), [
    ("localhost:8765", "'localhost:8765' is not a server URL; write it like http://127.0.0.1:8765"),
    ("http://[::1", "(Invalid IPv6 URL)"),
    ("http://h:99999", "(Port out of range 0-65535)"),
    ("http://", "'http://' is not a server URL"),
    ("http://a\x00b", "Invalid non-printable ASCII character"),
], ids=["no-scheme", "bad-ipv6", "bad-port", "no-host", "httpx-refuses"])
def test_a_client_for_a_url_that_is_none_says_how_to_write_it(url: str, says: str) -> None:
    with pytest.raises(C.ConfigError) as caught:
        Client(url)
    assert says in caught.value.message


def test_a_server_url_keeps_its_form_without_the_trailing_slash() -> None:
    assert C.checked_url("http://[::1]:8765/") == "http://[::1]:8765"
    assert Client("https://corral.example.com/").url == "https://corral.example.com"
