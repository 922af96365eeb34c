"""A list-then-watch cache of one kind of Kubernetes object, so that the Kubernetes backend's
`poll_changes` costs what changed instead of listing every pod each control-loop step.

This is client-go's reflector and store, in miniature (and what the official Python client's
`kubernetes.watch.Watch` is made for):

    list      ── GET .../pods?labelSelector=...  ──────> every object + the list's resourceVersion
    watch     ── GET ...&watch=true&resourceVersion=RV ─> ADDED / MODIFIED / DELETED / BOOKMARK
                 (held open up to `watch_timeout_s`, then the watch resumes from the last version
                 seen, without a new list)
    410 Gone  ── the version is older than the server keeps: list again, then watch from there
    an error  ── not synced until the next list succeeds (the caller lists for itself meanwhile)

The cache is eventually consistent with the API server (a watch event arrives shortly after the
change). Callers that must not act on a stale *absence* (a pod created a moment ago, not yet
seen) confirm with one direct read of that object: absences are rare (deletions), so the extra
read costs what changed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Informer"]

log = logging.getLogger(__name__)

#: the HTTP status a watch answers when its resourceVersion is too old (etcd compacted it)
GONE = 410


class Informer:
    """The objects that `list_fn(*args, label_selector=...)` returns, kept current by a watch on
    a daemon thread. See the module docstring.

    `objects()` is None until the first list succeeded and while the watch is broken;
    `take_changed()` says which names changed since the last call (None: a list replaced
    everything, so treat every object as changed)."""

    def __init__(self, list_fn: Callable[..., Any], *args: Any, label_selector: str = "",
                 request_timeout_s: float = 30.0, watch_timeout_s: int = 240,
                 retry_after_s: float = 1.0, what: str = "objects") -> None:
        self._list_fn, self._args = list_fn, args
        self._selector = label_selector
        self._request_timeout_s, self._watch_timeout_s = request_timeout_s, watch_timeout_s
        self._retry_after_s, self._what = retry_after_s, what
        self._lock = threading.Lock()
        self._objects: dict[str, Any] = {}
        self._changed: set[str] | None = None  # None: everything (after a list)
        self._synced = False
        self._closed = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None
        #: the resourceVersion of the last list or event applied (tests wait on it)
        self.version = ""
        self.lists = 0  # how many full lists were made (the first and every resync)

    # --- what the backend reads ----------------------------------------------------------------

    def start(self) -> Informer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"watch {self._what}",
                                            daemon=True)
            self._thread.start()
        return self

    def objects(self) -> dict[str, Any] | None:
        """A copy of the cache by name; None while not synced (list for yourself then)."""
        with self._lock:
            return dict(self._objects) if self._synced else None

    def take_changed(self) -> set[str] | None:
        """Names added, modified or deleted since the last call; None: all of them (a list
        replaced the cache, or this is the first call)."""
        with self._lock:
            changed, self._changed = self._changed, set()
            return changed

    def put(self, obj: Any) -> None:
        """An object this process just wrote (the API's answer): seen at once, not when its
        watch event arrives, unless a newer version is already here."""
        name = obj.metadata.name
        with self._lock:
            old = self._objects.get(name)
            if old is None or _newer(obj, old):
                self._objects[name] = obj
                if self._changed is not None:
                    self._changed.add(name)

    def close(self) -> None:
        self._closed.set()
        watch = self._watch
        if watch is not None:
            watch.stop()  # shuts a real connection's socket; closing the response as well
            response = getattr(watch, "_resp", None)  # ends a read that is not on a socket
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        from kubernetes.client.exceptions import ApiException

        while not self._closed.is_set():
            try:
                version = self._relist()
                while not self._closed.is_set():
                    version = self._watch_from(version)
            except ApiException as e:
                if e.status != GONE:
                    self._broken(e)
            except Exception as e:  # any transport error: resync after a pause
                self._broken(e)

    def _broken(self, e: Exception) -> None:
        with self._lock:
            self._synced = False
        if not self._closed.is_set():
            log.warning("watching %s failed (%s); listing again in %.0f s", self._what, e,
                        self._retry_after_s)
            self._closed.wait(self._retry_after_s)

    def _relist(self) -> str:
        listing = self._list_fn(*self._args, label_selector=self._selector,
                                _request_timeout=self._request_timeout_s)
        version = listing.metadata.resource_version or ""
        with self._lock:
            self._objects = {o.metadata.name: o for o in listing.items}
            self._changed = None
            self._synced = True
            self.version = version
            self.lists += 1
        return version

    def _watch_from(self, version: str) -> str:
        """One watch request from `version` until the server ends it; the last version seen.
        Raises on 410 Gone (the caller lists again) and on any other error."""
        from kubernetes import watch

        self._watch = w = watch.Watch()
        stream = w.stream(self._list_fn, *self._args, label_selector=self._selector,
                          resource_version=version, timeout_seconds=self._watch_timeout_s,
                          allow_watch_bookmarks=True,
                          _request_timeout=self._watch_timeout_s + self._request_timeout_s)
        for event in stream:
            if self._closed.is_set():
                break
            self._apply(event)
        return w.resource_version or version

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "BOOKMARK":  # only a newer version: nothing changed
            version = (event.get("raw_object") or {}).get("metadata", {}).get("resourceVersion")
            if version:
                self.version = version
            return
        name = obj.metadata.name
        with self._lock:
            if kind == "DELETED":
                self._objects.pop(name, None)
            else:
                old = self._objects.get(name)
                if old is None or not _newer(old, obj):
                    self._objects[name] = obj
            if self._changed is not None:
                self._changed.add(name)
            self.version = obj.metadata.resource_version or self.version


def _newer(a: Any, b: Any) -> bool:
    """Whether `a` is a later version of the same object than `b`. resourceVersions are opaque
    strings to clients; etcd's are integers, and where both parse that order is used, else the
    later arrival wins (the watch delivers in order)."""
    try:
        return int(a.metadata.resource_version) > int(b.metadata.resource_version)
    except (TypeError, ValueError):
        return False

