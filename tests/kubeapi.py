"""A stand-in Kubernetes API server on loopback, for driving the real `kubernetes` client.

No API server can run on the test machines, so this speaks the parts of the real HTTP
API that `servegen status` uses, with the real wire shapes:

- discovery: `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>` (APIVersions,
  APIGroupList, APIResourceList); a group whose CRD is not installed is a 404;
- get and list of namespaced collections, with `labelSelector` (`k=v`, `k!=v`, `k`) and
  `metadata.resourceVersion` on the list;
- watch (`?watch=true&resourceVersion=N&timeoutSeconds=S`): a chunked stream of
  `{"type": ADDED|MODIFIED|DELETED, "object": ...}` lines after N, an `ERROR` event
  with a 410 Status when N is older than the retained history;
- bearer-token authentication (401 Status) and per-resource authorisation (403 Status
  in the API server's wording); writes are refused (405), as the client must only read.

Tests change objects (`apply`, `set_status`, `delete`) while a client watches; every
change gets the next resourceVersion and is delivered to the open watches.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "servegen-test-token"


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS = {
    k.kind: k
    for k in (
        Kind("", "v1", "Service", "services"),
        Kind("", "v1", "ConfigMap", "configmaps"),
        Kind("", "v1", "ServiceAccount", "serviceaccounts"),
        Kind("apps", "v1", "Deployment", "deployments"),
        Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
        Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        Kind("kubeai.org", "v1", "Model", "models"),
        Kind("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices"),
        Kind("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"),
        Kind("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"),
    )
}


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A metav1.Status, as the API server sends with every error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class Event:
    rv: int
    type: str
    kind: Kind
    namespace: str
    obj: dict[str, Any]


class FakeKubeAPI:
    """The server's state; `start()` serves it on 127.0.0.1 and a free port."""

    def __init__(self, tokens: tuple[str, ...] = (TOKEN,)) -> None:
        self.tokens = set(tokens)
        self.installed = set(KINDS)  # kinds whose API (CRD) is served
        self.forbidden: set[tuple[str, str]] = set()  # (plural, namespace); "*" = any
        # When set, RBAC in force: only these (group, plural, namespace, verb) are allowed.
        self.allowed: set[tuple[str, str, str, str]] | None = None
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # kind, ns, name
        self.events: list[Event] = []
        self.oldest_rv = 0  # watches from before this get 410 Gone
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.watches_opened = 0
        self._rv = itertools.count(100)
        self._last_rv = 99
        self._cond = threading.Condition()
        self._stopping = False
        self._generation = 0  # end_watches() bumps it: open watch streams end
        self._server: ThreadingHTTPServer | None = None
        # Open client connections and the threads serving them: a kept-alive connection
        # holds its thread in a read after the last response, and a thread left behind
        # stops every later test's fork (workers fork only from a single thread).
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKubeAPI:
        api = self

        class Handler(_Handler):
            state = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cond:
            open_now = dict(self._connections)
        for connection, thread in open_now.items():
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            thread.join(timeout=10)

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(
        self,
        path: Path,
        token: str = TOKEN,
        context: str = "test",
        server: str | None = None,
        extra_contexts: Mapping[str, str] | None = None,
    ) -> Path:
        """A real kubeconfig (token auth); `extra_contexts` maps more contexts to servers."""
        servers = {context: server or self.url, **(extra_contexts or {})}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": c, "cluster": {"server": s}} for c, s in servers.items()],
            "users": [{"name": "reader", "user": {"token": token}}],
            "contexts": [
                {"name": c, "context": {"cluster": c, "user": "reader", "namespace": "default"}}
                for c in servers
            ],
            "current-context": context,
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # ------------------------------------------------------------------ scripting

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object (keeping its status unless `obj` has one)."""
        kind = KINDS[str(obj["kind"])]
        stored = copy.deepcopy(dict(obj))
        meta = stored.setdefault("metadata", {})
        namespace = str(meta.get("namespace", "default"))
        key = (kind.kind, namespace, str(meta["name"]))
        with self._cond:
            old = self.objects.get(key)
            meta["namespace"] = namespace
            meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
            meta["generation"] = (old["metadata"]["generation"] + 1) if old else 1
            if old is not None and "status" not in stored and "status" in old:
                stored["status"] = old["status"]
            self._store(key, kind, stored, "MODIFIED" if old else "ADDED")
        return stored

    def set_status(
        self, kind: str, namespace: str, name: str, status: Any, emit: bool = True
    ) -> None:
        """Replace an object's status; `emit=False` changes it without a watch event
        (as if it happened in history a later `compact()` forgets)."""
        key = (kind, namespace, name)
        with self._cond:
            stored = copy.deepcopy(self.objects[key])
            stored["status"] = status
            if emit:
                self._store(key, KINDS[kind], stored, "MODIFIED")
            else:
                self._last_rv = next(self._rv)
                stored["metadata"]["resourceVersion"] = str(self._last_rv)
                self.objects[key] = stored

    def delete(self, kind: str, namespace: str, name: str) -> None:
        key = (kind, namespace, name)
        with self._cond:
            stored = copy.deepcopy(self.objects.pop(key))
            self._emit(KINDS[kind], namespace, stored, "DELETED")

    def uninstall(self, kind: str) -> None:
        """Remove a kind's CRD: its API disappears from discovery, its objects are gone."""
        with self._cond:
            self.installed.discard(kind)
            for key in [k for k in self.objects if k[0] == kind]:
                del self.objects[key]

    def install(self, kind: str) -> None:
        """Add a kind's CRD back: discovery serves it again (with no objects yet)."""
        with self._cond:
            self.installed.add(kind)

    def allow_roles(self, roles: list[dict[str, Any]]) -> None:
        """Enforce these RBAC Roles (namespaced rules) instead of allowing everything."""
        self.allowed = {
            (group, resource, role["metadata"]["namespace"], verb)
            for role in roles
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }

    def end_watches(self) -> None:
        """Close every open watch stream, as an API server does at its watch timeout."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: older watches get 410."""
        with self._cond:
            self.oldest_rv = self._last_rv + 1
            self.events.clear()

    def wait_for_watches(self, count: int, timeout: float = 30) -> None:
        """Block until `count` watch requests have been opened in total."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.watches_opened < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {self.watches_opened} watch(es) opened")
                self._cond.wait(left)

    def wait_for_requests(
        self, matches: Callable[[str], bool], count: int, timeout: float = 30
    ) -> None:
        """Block until `count` GET requests whose path?query `matches` have arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for m, p in self.requests if m == "GET" and matches(p)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fewer than {count} matching request(s) arrived")
                self._cond.wait(left)

    def _store(
        self, key: tuple[str, str, str], kind: Kind, obj: dict[str, Any], kind_of: str
    ) -> None:
        self.objects[key] = obj
        self._emit(kind, key[1], obj, kind_of)

    def _emit(self, kind: Kind, namespace: str, obj: dict[str, Any], type_: str) -> None:
        rv = next(self._rv)
        self._last_rv = rv
        obj["metadata"]["resourceVersion"] = str(rv)
        self.events.append(Event(rv, type_, kind, namespace, copy.deepcopy(obj)))
        self._cond.notify_all()

    # ------------------------------------------------------------------ reading

    def items(self, kind: Kind, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self.objects.items())
            if k == kind.kind and ns == namespace and _matches(obj, selector)
        ]

    def stream(
        self, kind: Kind, namespace: str, selector: str, since: int, timeout: float
    ) -> Iterator[dict[str, Any]]:
        """Watch events after `since`, until `timeout` passes or the server stops."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self.watches_opened += 1
            generation = self._generation
            self._cond.notify_all()
            expired = since < self.oldest_rv - 1
        if expired:
            message = f"too old resource version: {since} ({self.oldest_rv})"
            yield {"type": "ERROR", "object": status_body(410, "Expired", message)}
            return
        while True:
            with self._cond:  # never held while writing to the socket
                pending = self._pending(kind, namespace, selector, since)
                left = deadline - time.monotonic()
                if (
                    not pending
                    and left > 0
                    and not self._stopping
                    and generation == self._generation
                ):
                    self._cond.wait(left)
                    pending = self._pending(kind, namespace, selector, since)
                stop = (
                    self._stopping or deadline <= time.monotonic() or generation != self._generation
                )
            for event in pending:
                since = event.rv
                yield {"type": event.type, "object": copy.deepcopy(event.obj)}
            if stop and not pending:
                return

    def _pending(self, kind: Kind, namespace: str, selector: str, since: int) -> list[Event]:
        return [
            e
            for e in self.events
            if e.rv > since
            and e.kind == kind
            and e.namespace == namespace
            and _matches(e.obj, selector)
        ]


def _matches(obj: Mapping[str, Any], selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    state: FakeKubeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet test output

    def setup(self) -> None:
        super().setup()
        with self.state._cond:
            self.state._connections[self.connection] = threading.current_thread()

    def finish(self) -> None:
        with self.state._cond:
            self.state._connections.pop(self.connection, None)
        super().finish()

    def do_GET(self) -> None:
        state = self.state
        with state._cond:
            state.requests.append(("GET", self.path))
            state._cond.notify_all()
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in state.tokens:
            self._json(401, status_body(401, "Unauthorized", "Unauthorized"))
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route(parts, query)

    def _refuse_write(self) -> None:
        self.state.requests.append((self.command, self.path))
        self._json(405, status_body(405, "MethodNotAllowed", "the stand-in server is read-only"))

    do_POST = do_PUT = do_PATCH = do_DELETE = _refuse_write

    # ------------------------------------------------------------------ routing

    def _route(self, parts: list[str], query: dict[str, str]) -> None:
        if parts == ["api"]:
            self._json(
                200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        elif parts == ["apis"]:
            self._json(200, self._group_list())
        elif parts[:2] == ["api", "v1"] and len(parts) == 2:
            self._discovery("", "v1")
        elif parts[:1] == ["apis"] and len(parts) == 3:
            self._discovery(parts[1], parts[2])
        elif parts[:2] == ["api", "v1"] and len(parts) in (5, 6) and parts[2] == "namespaces":
            self._collection(
                "", "v1", parts[3], parts[4], parts[5] if len(parts) == 6 else None, query
            )
        elif parts[:1] == ["apis"] and len(parts) in (6, 7) and parts[3] == "namespaces":
            name = parts[6] if len(parts) == 7 else None
            self._collection(parts[1], parts[2], parts[4], parts[5], name, query)
        else:
            self._json(
                404,
                status_body(404, "NotFound", "the server could not find the requested resource"),
            )

    def _served(self) -> list[Kind]:
        return [KINDS[k] for k in sorted(self.state.installed)]

    def _group_list(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for kind in self._served():
            if kind.group:
                groups.setdefault(kind.group, [])
                if kind.version not in groups[kind.group]:
                    groups[kind.group].append(kind.version)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                    "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                }
                for g, vs in sorted(groups.items())
            ],
        }

    def _discovery(self, group: str, version: str) -> None:
        kinds = [k for k in self._served() if k.group == group and k.version == version]
        if not kinds:
            self._json(
                404,
                status_body(404, "NotFound", "the server could not find the requested resource"),
            )
            return
        self._json(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": kinds[0].api_version,
                "resources": [
                    {
                        "name": k.plural,
                        "singularName": k.kind.lower(),
                        "namespaced": True,
                        "kind": k.kind,
                        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                    }
                    for k in kinds
                ],
            },
        )

    def _collection(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str | None,
        query: dict[str, str],
    ) -> None:
        state = self.state
        kind = next(
            (
                k
                for k in self._served()
                if (k.group, k.version, k.plural) == (group, version, plural)
            ),
            None,
        )
        if kind is None:
            self._json(
                404,
                status_body(404, "NotFound", "the server could not find the requested resource"),
            )
            return
        watching = query.get("watch") in ("true", "1")
        verb = "get" if name else ("watch" if watching else "list")
        denied = state.allowed is not None and (group, plural, namespace, verb) not in state.allowed
        if denied or (plural, namespace) in state.forbidden or (plural, "*") in state.forbidden:
            resource = f"{plural}.{group}" if group else plural
            message = (
                f'{resource} is forbidden: User "system:serviceaccount:ci:status-reader" cannot '
                f'{verb} resource "{plural}" in API group "{group}" in the namespace "{namespace}"'
            )
            self._json(403, status_body(403, "Forbidden", message))
            return
        selector = query.get("labelSelector", "")
        if name is not None:
            with state._cond:
                obj = state.objects.get((kind.kind, namespace, name))
            if obj is None:
                resource = f"{plural}.{group}" if group else plural
                self._json(404, status_body(404, "NotFound", f'{resource} "{name}" not found'))
            else:
                self._json(200, copy.deepcopy(obj))
            return
        if watching:
            since = int(query.get("resourceVersion") or 0)
            timeout = float(query.get("timeoutSeconds") or 1800)
            self._watch(kind, namespace, selector, since, timeout)
            return
        with state._cond:
            items = state.items(kind, namespace, selector)
            rv = state._last_rv
        self._json(
            200,
            {
                "kind": f"{kind.kind}List",
                "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            },
        )

    # ------------------------------------------------------------------ responses

    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _watch(self, kind: Kind, namespace: str, selector: str, since: int, timeout: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in self.state.stream(kind, namespace, selector, since, timeout):
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
