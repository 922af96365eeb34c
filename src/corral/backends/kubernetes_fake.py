"""An in-memory Kubernetes API server behind the official client's HTTP transport, for tests.

`FakeKubernetes.api_client()` returns a real ``kubernetes.client.ApiClient`` whose urllib3 pool
manager is this object, so every call of the client (serialization of the pod corral builds,
query parameters, deserialization into V1Pod/V1Node, error handling through ApiException) runs
for real; only the server side is faked. It serves what the Kubernetes backend uses: nodes (list),
pods (create, list by label selector, get, merge-patch, delete with a grace period, log) and
services (create, delete), with the API's status codes and Status bodies (404, 409, 422), and
watches of pods and nodes: every change bumps one resourceVersion counter (as etcd's revision
does), lists carry it, and ``?watch=true&resourceVersion=RV`` streams the ADDED / MODIFIED /
DELETED events after RV as they happen, one JSON object per line, until ``timeoutSeconds`` or
until the client closes it; `compact` forgets old events, so a watch from before them gets the
API's ``410 Gone`` ERROR event.

The kubelet is played by the test through hooks: `run` (the container started), `exit` (the
container ended with a code; a pod being deleted then disappears, as on a real cluster),
`set_ready` (the node's Ready condition), `write_log`, and `fail_next` (the next matching request
gets an error status).

What it does not do (see backends/README.md): admission, scheduling, resource accounting,
optimistic concurrency on resourceVersion, bookmarks, the downward-API volume refresh.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeKubernetes"]

_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")
_SERVICES = re.compile(r"^/api/v1/namespaces/([^/]+)/services(?:/([^/]+))?$")
HOST = "http://fake-kubernetes.invalid"


def _locked(method: Any) -> Any:
    """A test hook runs under the server's lock: a watching thread may be reading."""
    def hook(self: FakeKubernetes, *args: Any, **kwargs: Any) -> Any:
        with self._cond:
            return method(self, *args, **kwargs)
    hook.__doc__, hook.__name__ = method.__doc__, method.__name__
    return hook


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeKubernetes:
    """See the module docstring. `requests` records (method, path, body) of every call."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    services: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    failures: list[list[Any]] = field(default_factory=list)  # [method, path part, status, skip]
    _ips: Any = field(default_factory=lambda: itertools.count(10))
    #: the last resourceVersion handed out, and every change since `compact` (rv, path, event)
    version: int = 0
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    compacted: int = 0
    watches: int = 0  # watch requests served (tests check the backend watched)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _streams: list[_WatchStream] = field(default_factory=list)

    def api_client(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = HOST
        api = client.ApiClient(cfg)
        api.rest_client.pool_manager = self  # type: ignore[assignment] - the transport seam
        return api

    # --- the kubelet and the cluster, played by the test -----------------------------------------

    @_locked
    def add_node(self, name: str, *, gpus: int = 8, product: str = "NVIDIA-H100-80GB-HBM3",
                 memory_mib: int = 81559, cpu: str = "64", ram: str = "512Gi",
                 zone: str = "z1", ready: bool = True, resource: str = "nvidia.com/gpu",
                 ) -> None:
        """resource: the device plugin's (``amd.com/gpu`` for a node of AMD GPUs, whose model
        AMD's node labeller names in ``amd.com/gpu.product-name``)."""
        labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}
        if gpus and resource == "nvidia.com/gpu":
            labels |= {"nvidia.com/gpu.product": product,
                       "nvidia.com/gpu.memory": str(memory_mib)}
        elif gpus and resource == "amd.com/gpu":
            labels |= {"amd.com/gpu.product-name": product}
        self.nodes[name] = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "uid": str(uuid.uuid4())},
            "spec": {},
            "status": {"capacity": {"cpu": cpu, "memory": ram, resource: str(gpus)},
                       "addresses": [{"type": "InternalIP", "address": f"10.0.0.{next(self._ips)}"}],
                       "conditions": []},
        }
        self.nodes[name]["status"]["conditions"] = _ready(ready)
        self._changed("ADDED", self.nodes[name])

    @_locked
    def set_ready(self, name: str, ready: bool) -> None:
        self.nodes[name]["status"]["conditions"] = _ready(ready)
        self._changed("MODIFIED", self.nodes[name])

    @_locked
    def cordon(self, name: str, unschedulable: bool = True) -> None:
        self.nodes[name]["spec"]["unschedulable"] = unschedulable
        self._changed("MODIFIED", self.nodes[name])

    def pod(self, name: str, namespace: str = "corral") -> dict[str, Any]:
        return self.pods[(namespace, name)]

    @_locked
    def run(self, name: str, namespace: str = "corral") -> None:
        pod = self.pod(name, namespace)
        pod["status"] = {"phase": "Running", "containerStatuses": [{
            "name": "worker", "ready": True, "restartCount": 0, "image": "", "imageID": "",
            "state": {"running": {"startedAt": _now_iso()}}}]}
        self._changed("MODIFIED", pod)

    @_locked
    def exit(self, name: str, code: int, namespace: str = "corral", reason: str = "",
             message: str = "") -> None:
        """The container ended (`message`: its termination message). A pod being deleted is
        then removed, as the API server does."""
        pod = self.pod(name, namespace)
        if pod["metadata"].get("deletionTimestamp"):
            del self.pods[(namespace, name)]
            self._changed("DELETED", pod)
            return
        pod["status"] = {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [{
            "name": "worker", "ready": False, "restartCount": 0, "image": "", "imageID": "",
            "state": {"terminated": {"exitCode": code, "finishedAt": _now_iso(),
                                     "reason": reason or ("Completed" if code == 0 else "Error"),
                                     **({"message": message} if message else {})}}}]}
        self._changed("MODIFIED", pod)

    @_locked
    def write_log(self, name: str, text: str, namespace: str = "corral") -> None:
        self.logs[(namespace, name)] = self.logs.get((namespace, name), "") + text

    def compact(self) -> None:
        """Forget every event so far (etcd's compaction): a watch from an older version gets
        410 Gone and must list again."""
        with self._cond:
            self.events.clear()
            self.compacted = self.version

    def close_watches(self) -> None:
        """End every open watch (a real API server's connection closing): a watching thread
        then returns from its read at once instead of at the watch's timeout."""
        with self._cond:
            for stream in self._streams:
                stream.closed = True
            self._streams.clear()
            self._cond.notify_all()

    def _changed(self, kind: str, obj: dict[str, Any]) -> None:
        """Stamp `obj` with a new resourceVersion and tell the watches."""
        with self._cond:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            path = ("/api/v1/nodes" if obj.get("kind") == "Node" else
                    f"/api/v1/namespaces/{obj['metadata'].get('namespace', '')}/pods")
            self.events.append((self.version, path, {"type": kind,
                                                     "object": json.loads(json.dumps(obj))}))
            self._cond.notify_all()

    def fail_next(self, method: str, path_part: str, status: int, *, after: int = 0) -> None:
        """The next `method` request whose path contains `path_part`, once `after` such
        requests went through, gets `status`."""
        self.failures.append([method.upper(), path_part, status, after])

    # --- the API server --------------------------------------------------------------------------

    def request(self, method: str, url: str, body: Any = None, fields: Any = None,
                timeout: Any = None, headers: Any = None, preload_content: bool = False,
                **_: Any) -> Any:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        data = json.loads(body) if isinstance(body, (str, bytes)) and body else body
        with self._cond:  # the test's thread and a watching thread both call in
            return self._request(method, parts.path, query, data)

    def _request(self, method: str, path: str, query: dict[str, str], data: Any) -> Any:
        self.requests.append((method, path, data))
        for i, failure in enumerate(self.failures):
            if failure[0] == method and failure[1] in path:
                if failure[3] > 0:
                    failure[3] -= 1
                    continue
                del self.failures[i]
                return _status(failure[2], "injected failure")
        if query.get("watch") == "true" and method == "GET":
            return self._watch(path, query)
        if path == "/api/v1/nodes" and method == "GET":
            return _json(200, {"kind": "NodeList", "apiVersion": "v1",
                               "metadata": {"resourceVersion": str(self.version)},
                               "items": list(self.nodes.values())})
        if m := _PODS.match(path):
            return self._pods(method, m[1], m[2], bool(m[3]), query, data)
        if m := _SERVICES.match(path):
            return self._services(method, m[1], m[2], data)
        return _status(404, f"the fake does not serve {method} {path}")

    def _watch(self, path: str, query: dict[str, str]) -> Any:
        self.watches += 1
        since = int(query.get("resourceVersion") or self.version)
        wanted = _selector(query.get("labelSelector", ""))
        timeout = float(query.get("timeoutSeconds", 300))
        stream = _WatchStream(self, path, since, wanted, time.monotonic() + timeout)
        self._streams.append(stream)
        return stream

    def _pods(self, method: str, ns: str, name: str | None, log: bool, query: dict[str, str],
              data: Any) -> Any:
        if name is None and method == "GET":
            wanted = _selector(query.get("labelSelector", ""))
            items = [p for (pns, _), p in sorted(self.pods.items()) if pns == ns and all(
                p["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
            return _json(200, {"kind": "PodList", "apiVersion": "v1",
                               "metadata": {"resourceVersion": str(self.version)},
                               "items": items})
        if name is None and method == "POST":
            return self._create_pod(ns, data)
        pod = self.pods.get((ns, name or ""))
        if pod is None:
            return _status(404, f'pods "{name}" not found', "NotFound")
        if log:
            return _text(200, self.logs.get((ns, name or ""), ""))
        if method == "GET":
            return _json(200, pod)
        if method == "PATCH":
            annotations = (data or {}).get("metadata", {}).get("annotations", {})
            pod["metadata"].setdefault("annotations", {}).update(annotations)
            self._changed("MODIFIED", pod)
            return _json(200, pod)
        if method == "DELETE":
            return self._delete_pod(ns, name or "", pod, query, data)
        return _status(405, f"{method} not allowed")

    def _create_pod(self, ns: str, pod: dict[str, Any]) -> Any:
        name = pod.get("metadata", {}).get("name", "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
            return _status(422, f'Pod "{name}" is invalid: metadata.name', "Invalid")
        if (ns, name) in self.pods:
            return _status(409, f'pods "{name}" already exists', "AlreadyExists")
        pod = json.loads(json.dumps(pod))
        pod["metadata"] |= {"namespace": ns, "uid": str(uuid.uuid4()),
                            "creationTimestamp": _now_iso()}
        pod["status"] = {"phase": "Pending"}
        self.pods[(ns, name)] = pod
        self._changed("ADDED", pod)
        return _json(201, pod)

    def _delete_pod(self, ns: str, name: str, pod: dict[str, Any], query: dict[str, str],
                    data: Any) -> Any:
        grace = query.get("gracePeriodSeconds", (data or {}).get("gracePeriodSeconds"))
        phase = pod.get("status", {}).get("phase")
        if (grace is not None and int(grace) == 0) or phase in ("Succeeded", "Failed"):
            del self.pods[(ns, name)]  # forced, or nothing left to stop
            self._changed("DELETED", pod)
            return _json(200, pod)
        if not pod["metadata"].get("deletionTimestamp"):
            pod["metadata"]["deletionTimestamp"] = _now_iso()
            pod["metadata"]["deletionGracePeriodSeconds"] = int(grace if grace is not None else 30)
            self._changed("MODIFIED", pod)
        return _json(200, pod)

    def _services(self, method: str, ns: str, name: str | None, data: Any) -> Any:
        if name is None and method == "POST":
            key = (ns, data["metadata"]["name"])
            if key in self.services:
                return _status(409, f'services "{key[1]}" already exists', "AlreadyExists")
            self.services[key] = data
            return _json(201, data)
        if name is not None and method == "DELETE":
            gone = self.services.pop((ns, name), None)
            if gone is None:
                return _status(404, f'services "{name}" not found', "NotFound")
            return _json(200, gone)  # the API answers a Service delete with the Service
        return _status(405, f"{method} not allowed")


class _WatchStream:
    """A watch's response: the events after `since` on `path` whose labels match, one JSON line
    each, as they happen, until the deadline or `close` (what the client's Watch reads through
    `stream()`)."""

    status, reason = 200, "OK"

    def __init__(self, server: FakeKubernetes, path: str, since: int, wanted: dict[str, str],
                 deadline: float) -> None:
        self.server, self.path, self.since = server, path, since
        self.wanted, self.deadline = wanted, deadline
        self.headers = {"Content-Type": "application/json"}
        self.closed = False

    def stream(self, amt: Any = None, decode_content: Any = None) -> Any:
        cond = self.server._cond
        with cond:
            compacted = self.server.compacted
        if self.since < compacted:
            yield (json.dumps({"type": "ERROR", "object": {
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": f"too old resource version: {self.since} ({compacted})",
                "reason": "Expired", "code": 410}}) + "\n").encode()
            return
        while not self.closed:
            with cond:
                ready = [e for rv, path, e in self.server.events
                         if rv > self.since and path == self.path and self._matches(e)]
                last = self.server.version
                left = self.deadline - time.monotonic()
                if not ready:
                    if left <= 0:
                        return
                    cond.wait(min(left, 0.2))
                    continue
                self.since = last
            for event in ready:
                yield (json.dumps(event) + "\n").encode()

    def _matches(self, event: dict[str, Any]) -> bool:
        labels = event["object"]["metadata"].get("labels", {})
        return all(labels.get(k) == v for k, v in self.wanted.items())

    def close(self) -> None:
        self.closed = True
        with self.server._cond:
            if self in self.server._streams:
                self.server._streams.remove(self)

    def release_conn(self) -> None:
        pass

    def getheaders(self) -> dict[str, str]:
        return self.headers


def _ready(ready: bool) -> list[dict[str, str]]:
    return [{"type": "Ready", "status": "True" if ready else "Unknown",
             "reason": "KubeletReady" if ready else "NodeStatusUnknown"}]


def _selector(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def _response(status: int, data: bytes, content_type: str) -> Any:
    import urllib3

    return urllib3.HTTPResponse(body=io.BytesIO(data), status=status, preload_content=False,
                                headers={"Content-Type": content_type}, reason=_REASONS.get(
                                    status, "OK"))


_REASONS = {200: "OK", 201: "Created", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 422: "Unprocessable Entity", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _json(status: int, obj: Any) -> Any:
    return _response(status, json.dumps(obj).encode(), "application/json")


def _text(status: int, text: str) -> Any:
    return _response(status, text.encode(), "text/plain")


def _status(code: int, message: str, reason: str = "") -> Any:
    return _json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": message, "reason": reason or _REASONS.get(code, ""),
                        "code": code})
