"""What headers cross the gateway, each way.

Hop-by-hop headers (RFC 9110 section 7.6.1: Connection and the fields it names, Keep-Alive,
Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade) describe one connection and are dropped; each
side's HTTP stack frames its own message. Host goes to the replica as the replica's own; the
client's is kept in X-Forwarded-Host. X-Forwarded-For is appended to (a client may come through
proxies of its own), while X-Forwarded-Proto, -Host and -Prefix are the gateway's to say and
replace whatever the client sent. The token that admitted the request is the gateway's, not
the replica's: a token-protected service's Authorization is not forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["HOP_BY_HOP", "request_headers", "response_headers"]

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
    b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
#: the gateway's server already answered the client's `Expect: 100-continue`; the replica gets
#: the body straight away
_REQUEST_ONLY = frozenset({b"expect"})
_FORWARDED = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix",
                        b"x-forwarded-for", b"forwarded"})


def _without_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    pairs = [(k.lower(), v) for k, v in headers]
    named = {token.strip().lower() for k, v in pairs if k == b"connection"
             for token in v.split(b",")}
    return [(k, v) for k, v in pairs if k not in HOP_BY_HOP and k not in named]


def request_headers(headers: Iterable[tuple[bytes, bytes]], *, client_ip: str | None,
                    scheme: str, prefix: str, keep_authorization: bool) -> Headers:
    """The headers to send the replica for a client's request headers."""
    pairs = _without_hop_by_hop(headers)
    host = next((v for k, v in pairs if k == b"host"), b"")
    chain = [v for k, v in pairs if k == b"x-forwarded-for"]
    out = [(k, v) for k, v in pairs
           if k not in _FORWARDED and k not in _REQUEST_ONLY and k != b"host"
           and (keep_authorization or k != b"authorization")]
    if client_ip:
        chain.append(client_ip.encode())
    if chain:
        out.append((b"x-forwarded-for", b", ".join(chain)))
    out.append((b"x-forwarded-proto", scheme.encode()))
    if host:
        out.append((b"x-forwarded-host", host))
    out.append((b"x-forwarded-prefix", prefix.encode()))
    return out


#: the ASGI server under the gateway writes its own (uvicorn always does): two would be invalid
_SERVER_OWNED = frozenset({b"date", b"server"})


def response_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """The headers to send the client for a replica's response headers (duplicates such as
    several Set-Cookie are kept)."""
    return [(k, v) for k, v in _without_hop_by_hop(headers) if k not in _SERVER_OWNED]
