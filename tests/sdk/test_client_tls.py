"""A client of a plain-HTTP server does not load a CA bundle (~45 ms of every CLI command,
issue 14), and what stands in for it trusts nothing; an https server is verified as usual."""

from __future__ import annotations

import ssl

import pytest

from corral.sdk import Client


def _context(client: Client) -> ssl.SSLContext:
    context = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert isinstance(context, ssl.SSLContext)
    return context


def test_a_plain_http_client_loads_no_certificate_authority(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with Client("http://127.0.0.1:8765") as client:
        context = _context(client)
        assert context.cert_store_stats()["x509_ca"] == 0  # fails closed if TLS were ever used
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_https_client_verifies_with_the_usual_authorities() -> None:
    with Client("https://corral.example.com") as client:
        assert _context(client).cert_store_stats()["x509_ca"] > 0


def test_behind_a_proxy_the_default_verification_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example.com:3128")
    with Client("http://127.0.0.1:8765") as client:
        assert _context(client).cert_store_stats()["x509_ca"] > 0
