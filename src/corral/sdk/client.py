"""A typed client for corral's HTTP API, on httpx.

    from corral.sdk import Client
    with Client("http://127.0.0.1:8765", token="crl_...") as c:
        sub = c.submit({"name": "train", "queue": "default", "gpus": 1, "command": ["python", "t.py"]})
        for chunk in c.follow_logs(sub.group_id):
            print(chunk, end="")

Errors (see `corral.sdk.errors`) carry the server's code, message and per-field problems.
"""

from __future__ import annotations

import builtins
import os
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from corral.sdk import errors as E
from corral.sdk import models as M
from corral.sdk.config import ConfigError, checked_url
from corral.sdk.config import resolve as _resolve_server
from corral.sdk.providers import DeclaredProvider
from corral.sdk.retry import Retries, send_with_retries
from corral.sdk.secrets import SecretInfo
from corral.sdk.webhooks import DeliveryPage

if TYPE_CHECKING:  # an annotation only: the builder is imported when one is passed
    from corral.sdk.builder import Workload

__all__ = ["Client"]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")
_ENDED = {"succeeded", "failed", "cancelled"}


def _read(response: httpx.Response, parse: Callable[[Any], R]) -> R:
    """The answer's body, parsed. A body that is not JSON, or not the wire type, is another
    service on that port (a proxy's login page, a web server) or a server of another version: a
    ServerError that says so, not a traceback from the JSON decoder or pydantic."""
    try:
        return parse(response.json())
    except ValueError as e:  # json's JSONDecodeError and pydantic's ValidationError both are
        if isinstance(e, ValidationError):
            first = e.errors()[0]
            why = (f"{e.error_count()} field(s) not as expected; "
                   f"{'.'.join(map(str, first['loc'])) or 'the body'}: {first['msg']}")
        else:
            why = f"not JSON: {response.headers.get('content-type') or 'no content type'}"
        request = response.request
        raise E.ServerError(
            f"the server at {request.url.scheme}://{request.url.netloc.decode()} answered "
            f"{request.method} {request.url.path} with something that is not corral's API "
            f"({why}); is it the corral server (--url, CORRAL_URL), of a version this client "
            "knows?", status=response.status_code, code="not_corral") from None


def _tls_for(url: str) -> ssl.SSLContext | bool:
    """What httpx verifies TLS with. A plain-HTTP server (`corral up` here) never speaks TLS,
    yet httpx builds a context for it by loading certifi's CA bundle: ~45 ms of every command.
    There, an empty client context (it trusts nothing, so it fails closed) stands in: redirects
    are not followed, and a proxy (which could speak TLS) keeps the default."""
    proxied = any(k.lower() in ("http_proxy", "all_proxy") for k in os.environ)
    if url.startswith("http://") and not proxied:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


class Client:
    """One connection pool to one server. Thread-safe as httpx.Client is.

    Annotations below `list` (the method) say `builtins.list`: inside the class body the bare
    name is the method, and a type checker reads `list[M.NodeInfo]` there as nonsense.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None,
                 retries: Retries | None = None) -> None:
        """`retries`: when a request is sent again (`corral.sdk.retry`; by default on connect
        errors, 429 and 503, up to 4 sends); `Retries(attempts=1)` turns them off."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = checked_url(url)  # a ConfigError that says how to write it
        self.retries = retries or Retries()
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                      transport=transport, verify=_tls_for(self.url))
        except httpx.InvalidURL as e:  # what urlsplit lets through (`http://a b`)
            raise ConfigError(f"{url!r} is not a server URL ({e})") from None

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None, **kwargs: Any) -> Client:
        """A client for the server the CLI would use (`corral.sdk.config`): the arguments, then
        CORRAL_URL / CORRAL_TOKEN, CORRAL_DATA_DIR, the current context (`corral login`),
        ./.corral, the default port. `kwargs` go to `Client(...)`."""
        found = _resolve_server(url, token)
        return cls(found.url, found.token, **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = send_with_retries(lambda: self._http.request(method, path, **kwargs),
                                         self.retries, method=method,
                                         headers=kwargs.get("headers"))
        except httpx.TransportError as e:
            raise E.ConnectionFailed(
                f"cannot reach the corral server at {self.url} ({e.__class__.__name__}); "
                "is `corral up` running, and is CORRAL_URL right?") from None
        if response.status_code >= 400:
            raise E.from_response(response)
        return response

    def _get(self, model: type[T], path: str, **params: Any) -> T:
        return _read(self._call("GET", path, params=_clean(params)), model.model_validate)

    def _post(self, model: type[T], path: str, body: Any = None) -> T:
        return _read(self._call("POST", path, json=body), model.model_validate)

    def _list(self, item: type[T], path: str) -> list[T]:
        return _read(self._call("GET", path), TypeAdapter(list[item]).validate_python)  # type: ignore[valid-type]

    # --- meta -----------------------------------------------------------------------------------

    def health(self) -> M.Health:
        return self._get(M.Health, "/v1/health")

    def version(self) -> M.Version:
        return self._get(M.Version, "/v1/version")

    # --- workloads ------------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any] | BaseModel | Workload, *,
               idempotency_key: str | None = None) -> M.Submitted:
        """Submit a spec: a dict (as a spec file holds it), a `WorkloadSpec`, or a builder
        (`corral.sdk.builder.job(...)...`, the same as `w.submit(client)`). With
        `idempotency_key`, a retry (say after a lost answer) returns the first submission
        instead of making a second one (Conflict if the spec differs)."""
        if _is_builder(spec):  # its own checks first (a parent built in Python has no id yet)
            return spec.submit(self, idempotency_key=idempotency_key)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self._call("POST", "/v1/workloads", json=_body(spec), headers=headers)
        return _read(response, M.Submitted.model_validate)

    def dry_run(self, spec: Mapping[str, Any] | BaseModel | Workload) -> M.DryRunResult:
        """What the server would do with `spec` now (any form `submit` takes), storing
        nothing."""
        if _is_builder(spec):
            return spec.dry_run(self)
        return self._post(M.DryRunResult, "/v1/dry-run", _body(spec))

    def get(self, workload_id: str) -> M.Workload:
        return self._get(M.Workload, f"/v1/workloads/{workload_id}")

    def list(self, *, queue: list[str] | None = None, state: list[str] | None = None,
             user: str | None = None, group: str | None = None, cursor: str | None = None,
             limit: int = 100) -> M.WorkloadPage:
        return self._get(M.WorkloadPage, "/v1/workloads", queue=queue, state=state, user=user,
                         group=group, cursor=cursor, limit=limit)

    def iter_workloads(self, **filters: Any) -> Iterator[M.Workload]:
        """Every workload matching `filters` (those of `list`), following the pages."""
        cursor = None
        while True:
            page = self.list(cursor=cursor, **filters)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, workload_id: str) -> M.Workload:
        return self._post(M.Workload, f"/v1/workloads/{workload_id}/cancel")

    def group(self, group_id: str) -> M.Submitted:
        """Every unit of one submission (an array's tasks), oldest first."""
        return self._get(M.Submitted, f"/v1/groups/{_seg(group_id)}")

    def cancel_group(self, group_id: str) -> M.Submitted:
        """Cancel every unit of one submission that has not ended (an array's tasks)."""
        return self._post(M.Submitted, f"/v1/groups/{_seg(group_id)}/cancel")

    def events(self, workload_id: str, after: int = 0) -> M.EventPage:
        return self._get(M.EventPage, f"/v1/workloads/{workload_id}/events", after=after)

    def deliveries(self, workload_id: str, *, group: bool = False) -> DeliveryPage:
        """The webhook delivery log of a workload's `notify` (or of a group's tasks)."""
        kind = "groups" if group else "workloads"
        return self._get(DeliveryPage, f"/v1/{kind}/{workload_id}/deliveries")

    def why(self, workload_id: str) -> M.WhyPending:
        return self._get(M.WhyPending, f"/v1/workloads/{workload_id}/why")

    def logs(self, workload_id: str, *, worker: int = 0, offset: int = 0,
             attempt: int | None = None, timestamps: bool = False) -> M.LogChunk:
        """A chunk of a worker's output from byte `offset`; with `timestamps`, `times` holds
        each line's time where the backend records them."""
        return self._get(M.LogChunk, f"/v1/workloads/{workload_id}/logs", worker=worker,
                         offset=offset, attempt=attempt,
                         **({"timestamps": "true"} if timestamps else {}))

    def follow_logs(self, workload_id: str, *, worker: int = 0, poll_s: float = 0.5,
                    timeout_s: float | None = None, offset: int = 0) -> Iterator[str]:
        """Yield new output (from byte `offset`) until the workload has ended and everything
        was read."""
        for chunk in self.follow_log_chunks(workload_id, worker=worker, poll_s=poll_s,
                                            timeout_s=timeout_s, offset=offset):
            yield chunk.data

    def follow_log_chunks(self, workload_id: str, *, worker: int = 0, poll_s: float = 0.5,
                          timeout_s: float | None = None, offset: int = 0,
                          timestamps: bool = False) -> Iterator[M.LogChunk]:
        """`follow_logs`, chunk by chunk (with their lines' times, given `timestamps`)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            ended = self.get(workload_id).state in _ENDED  # read state first: no lost tail
            chunk = self.logs(workload_id, worker=worker, offset=offset, timestamps=timestamps)
            if chunk.data:
                yield chunk
            offset = chunk.next_offset
            if chunk.data:
                continue
            if ended or (deadline is not None and time.monotonic() > deadline):
                return
            time.sleep(poll_s)

    def wait(self, workload_id: str, *, states: set[str] | None = None,
             timeout_s: float | None = None, poll_s: float = 0.2,
             max_poll_s: float = 2.0) -> M.Workload:
        """Poll until the workload reaches one of `states` (default: ended). No limit by
        default (training runs for days); with `timeout_s`, TimeoutError after it. The poll
        interval grows from `poll_s` to `max_poll_s` so a long wait does not hammer the API."""
        want = states or _ENDED
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            w = self.get(workload_id)
            if w.state in want:
                return w
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{workload_id} is still {w.state} after {timeout_s:g}s")
            time.sleep(poll_s)
            poll_s = min(max_poll_s, poll_s * 1.5)

    # --- services -------------------------------------------------------------------------------

    def service(self, service_id: str) -> M.Service:
        """A service (its id: the `group_id` its submission returned) and its replicas."""
        return self._get(M.Service, f"/v1/services/{_seg(service_id)}")

    def scale(self, service_id: str, replicas: int) -> M.Service:
        """Set a service's desired replicas (within its spec's min_replicas, max_replicas)."""
        return self._post(M.Service, f"/v1/services/{_seg(service_id)}/scale",
                          {"replicas": replicas})

    def update_service(self, service_id: str, spec: Mapping[str, Any] | BaseModel) -> M.Service:
        """Roll a service out to a new spec (new replicas, then the old ones drained; rolled
        back if the new ones do not become ready)."""
        return self._post(M.Service, f"/v1/services/{_seg(service_id)}/update", _body(spec))

    def cancel_service(self, service_id: str) -> M.Service:
        """Cancel every replica of a service."""
        return self._post(M.Service, f"/v1/services/{_seg(service_id)}/cancel")

    # --- pool, queues, users --------------------------------------------------------------------

    def nodes(self) -> builtins.list[M.NodeInfo]:
        return self._list(M.NodeInfo, "/v1/nodes")

    def providers(self) -> builtins.list[M.ProviderInfo]:
        """Per provider: kinds, regions, GPUs per model, GPUs allocated / idle / unavailable."""
        return self._list(M.ProviderInfo, "/v1/providers")

    def declared_providers(self) -> builtins.list[DeclaredProvider]:
        """The renting providers (aws, ssh) with their settings and lifecycle (admin)."""
        return self._list(DeclaredProvider, "/v1/providers/declared")

    def add_provider(self, spec: Mapping[str, Any]) -> DeclaredProvider:
        """Add a renting provider at run time: a pool file's `providers:` entry (admin)."""
        return self._post(DeclaredProvider, "/v1/providers/declared", dict(spec))

    def remove_provider(self, name: str, *, force: bool = False,
                        timeout_s: float | None = None) -> DeclaredProvider:
        """Start removing a renting provider: it drains and returns its capacity (admin).
        `timeout_s`: work still running then is stopped; `force`: now."""
        params: dict[str, Any] = {"force": "true"} if force else {}
        if timeout_s is not None:
            params["timeout_s"] = timeout_s
        response = self._call("DELETE", f"/v1/providers/declared/{_seg(name)}",
                              params=params or None)
        return _read(response, DeclaredProvider.model_validate)

    def cordon(self, node_id: str) -> M.NodeInfo:
        return self._post(M.NodeInfo, f"/v1/nodes/{node_id}/cordon")

    def uncordon(self, node_id: str) -> M.NodeInfo:
        return self._post(M.NodeInfo, f"/v1/nodes/{node_id}/uncordon")

    def queues(self) -> builtins.list[M.QueueInfo]:
        return self._list(M.QueueInfo, "/v1/queues")

    def queue(self, name: str) -> M.QueueInfo:
        return self._get(M.QueueInfo, f"/v1/queues/{name}")

    def create_queue(self, name: str, **fields: Any) -> M.QueueInfo:
        return self._post(M.QueueInfo, "/v1/queues", {"name": name, **fields})

    def update_queue(self, name: str, **fields: Any) -> M.QueueInfo:
        body = {"name": name, **fields}
        return _read(self._call("PUT", f"/v1/queues/{name}", json=body), M.QueueInfo.model_validate)

    def delete_queue(self, name: str) -> None:
        self._call("DELETE", f"/v1/queues/{name}")

    # --- users, tokens, members, audit -----------------------------------------------------------

    def whoami(self) -> M.UserOut:
        return self._get(M.UserOut, "/v1/whoami")

    def create_user(self, name: str, *, role: str = "user", queues: builtins.list[str] | None = None
                    ) -> M.TokenOut:
        """A new user (admins), a member of `queues`; the answer holds their first token."""
        return self._post(M.TokenOut, "/v1/users",
                          {"name": name, "role": role, "queues": queues or []})

    def users(self) -> builtins.list[M.UserOut]:
        return self._list(M.UserOut, "/v1/users")

    def user(self, name: str) -> M.UserOut:
        return self._get(M.UserOut, f"/v1/users/{_seg(name)}")

    def delete_user(self, name: str) -> None:
        """Remove a user (admins): their tokens stop working at once; their work stays."""
        self._call("DELETE", f"/v1/users/{_seg(name)}")

    def create_token(self, *, user: str | None = None, name: str = "",
                     expires_in_s: float | None = None, rate_per_s: float | None = None,
                     burst: int | None = None) -> M.TokenCreated:
        """A new token for yourself (admins: for `user`); `.token` is shown only this once."""
        body = _clean({"user": user, "name": name, "expires_in_s": expires_in_s,
                       "rate_per_s": rate_per_s, "burst": burst})
        return self._post(M.TokenCreated, "/v1/tokens", body)

    def tokens(self, user: str | None = None) -> builtins.list[M.TokenInfo]:
        """Your tokens (admins: everyone's, or `user`'s), revoked ones too; never the secrets."""
        response = self._call("GET", "/v1/tokens", params=_clean({"user": user}))
        return _read(response, TypeAdapter(builtins.list[M.TokenInfo]).validate_python)

    def revoke_token(self, token_id: int) -> M.TokenInfo:
        response = self._call("DELETE", f"/v1/tokens/{int(token_id)}")
        return _read(response, M.TokenInfo.model_validate)

    def members(self, queue: str) -> builtins.list[M.Member]:
        return self._list(M.Member, f"/v1/queues/{_seg(queue)}/members")

    def add_member(self, queue: str, user: str, role: str = "member") -> M.Member:
        """Put `user` in `queue` as queue_admin, member or viewer (or change their role)."""
        response = self._call("PUT", f"/v1/queues/{_seg(queue)}/members/{_seg(user)}",
                              json={"role": role})
        return _read(response, M.Member.model_validate)

    def remove_member(self, queue: str, user: str) -> None:
        self._call("DELETE", f"/v1/queues/{_seg(queue)}/members/{_seg(user)}")

    def audit(self, *, after: int = 0, actor: str | None = None, action: str | None = None,
              limit: int = 200) -> M.AuditPage:
        """Admin and cross-user actions, oldest first (admins); page with `next_after`."""
        return self._get(M.AuditPage, "/v1/audit", after=after, actor=actor, action=action,
                         limit=limit)

    # -- secrets (issue 13): values go in, only names come out --------------------------------

    def set_secret(self, name: str, value: str, *, queue: str | None = None) -> SecretInfo:
        """Set (or replace) a secret for `queue`'s work (its queue_admin or an admin), or for
        every queue (admins); a spec uses it as `env: {VAR: {secret: name}}`."""
        response = self._call("PUT", f"/v1/secrets/{_seg(name)}",
                              json=_clean({"value": value, "queue": queue}))
        return _read(response, SecretInfo.model_validate)

    def secrets(self, queue: str | None = None) -> builtins.list[SecretInfo]:
        """The secrets your work may use (names and times, never values)."""
        response = self._call("GET", "/v1/secrets", params=_clean({"queue": queue}))
        return _read(response, TypeAdapter(builtins.list[SecretInfo]).validate_python)

    def delete_secret(self, name: str, *, queue: str | None = None) -> None:
        self._call("DELETE", f"/v1/secrets/{_seg(name)}", params=_clean({"queue": queue}))


def _is_builder(spec: object) -> TypeGuard[Workload]:
    """A `corral.sdk.builder.Workload`; the builder is imported only when one could be here
    (it loads the spec models, which a client that sends dicts does not need)."""
    if isinstance(spec, (Mapping, BaseModel)):
        return False
    from corral.sdk.builder import Pipeline, Workload

    if isinstance(spec, Pipeline):
        raise TypeError("Client.submit and dry_run take one workload; a Pipeline is "
                        "checked and submitted all or nothing by pipeline.dry_run(client) "
                        "and pipeline.submit(client)")
    return isinstance(spec, Workload)


def _body(spec: Mapping[str, Any] | BaseModel | Workload) -> Any:
    if isinstance(spec, BaseModel):
        body = spec.model_dump(mode="json", exclude_defaults=True)
        if "cpu" in body:  # a WorkloadSpec holds milli-cores; a plain number on input is cores
            body["cpu"] = f"{body['cpu']}m"
        return body
    if isinstance(spec, Mapping):
        return dict(spec)
    return spec.to_dict()  # a builder: submit and dry_run pass it through its own checks first


def _seg(name: str) -> str:
    """One path segment: a name with `/` or `?` stays one segment instead of a different URL."""
    return quote(name, safe="")


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
