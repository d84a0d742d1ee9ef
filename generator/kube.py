"""Read-only access to a Kubernetes API server through the official `kubernetes` client.

Only discovery, list and watch are used (no get-by-name, no writes), so a reader needs
just `list` and `watch` on the kinds servegen renders. Objects are handled as plain
JSON (the client's `_preload_content=False`), never as the client's typed models: a
malformed status field from a controller must become a message, not a crash while
deserialising.

Every failure to reach or authenticate to the cluster is a ClusterError naming the
context (exit code 3); a kind the cluster does not serve (no CRD installed) is not an
error here but `None`, for the caller to report per model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigMerger

from generator.errors import ClusterError, printable
from generator.statusplan import Kind

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
IN_CLUSTER = "in-cluster service account"

Object = dict[str, Any]


@dataclass(frozen=True)
class Listing:
    """The objects of one kind in one namespace, and the list's resourceVersion."""

    items: dict[str, Object]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    name: str
    obj: Object


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class Interrupted(Exception):
    """The watch connection dropped mid-stream: watch again from the last version."""


def kubeconfig_files() -> str:
    """KUBECONFIG (a path list) or the default path; read per call, not at import."""
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def _has_kubeconfig(files: str) -> bool:
    return any(Path(p).expanduser().is_file() for p in files.split(os.pathsep) if p)


def connect(context: str | None) -> Cluster:
    """A client for `context` (None: the current context, or in-cluster config)."""
    files = kubeconfig_files()
    configuration = k8s.Configuration()
    if context is None and not _has_kubeconfig(files) and "KUBERNETES_SERVICE_HOST" in os.environ:
        try:
            kubeconfig.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ClusterError(f"cannot use the {IN_CLUSTER}: {exc}") from None
        name = IN_CLUSTER
    else:
        name, merged = _check_context(files, context)
        missing = _missing_exec_plugin(merged, name)
        if missing is not None:
            raise ClusterError(
                f"context {name!r} of kubeconfig {files} gets its credentials from the program "
                f"{missing!r}, which is not installed here (not on PATH)"
            )
        try:
            with _logged_by_the_client() as logged:
                kubeconfig.load_kube_config(
                    config_file=files,
                    context=name,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, ValueError, TypeError, KeyError, OSError) as exc:
            raise ClusterError(
                f"cannot use context {name!r} of kubeconfig {files}: {exc}"
            ) from None
        if logged:  # a credential program that failed: the client goes on without any
            first = next(iter(logged[0].strip().splitlines()), "")
            raise ClusterError(
                f"context {name!r} of kubeconfig {files}: getting its credentials failed: "
                + printable(first)
            )
    # One quick retry of a refused connection; an unreachable cluster must fail fast. Its
    # "Retrying" warning is not servegen's: the failure is told in one line of its own.
    configuration.retries = urllib3.Retry(total=1, connect=1, read=0, backoff_factor=0.1)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    return Cluster(name, configuration.host, k8s.ApiClient(configuration))


@contextlib.contextmanager
def _logged_by_the_client() -> Iterator[list[str]]:
    """What the client logs while it loads a kubeconfig, kept instead of printed:
    kubernetes' config/kube_config.py (v37) logs an exec plugin's failure (its exit status and
    stderr, several lines) with logging.error() and carries on without credentials."""
    logged: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record.getMessage())

    keep = _Keep(logging.ERROR)
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        yield logged
    finally:
        root.removeHandler(keep)


def _check_context(files: str, context: str | None) -> tuple[str, Any]:
    """The context to use, and the kubeconfig files merged as the client reads them."""
    if not _has_kubeconfig(files):
        where = (
            f"context {context!r} is named (environments.<env>.context), which needs one"
            if context is not None
            else "not running in a cluster"
        )
        raise ClusterError(f"no kubeconfig found at {files} and {where}; set KUBECONFIG")
    try:
        # The client's own lookup of an empty current-context reads "Expected object
        # with name  in ...": servegen says it below, in its words.
        merged = KubeConfigMerger(files).config
        if context is None and not merged.safe_get("current-context"):
            raise ClusterError(f"kubeconfig {files} has no current context; name one")
        contexts, current = kubeconfig.list_kube_config_contexts(config_file=files)
        names = sorted(str(c.get("name")) for c in contexts or [])
    except ClusterError:
        raise
    except Exception as exc:
        # A broken file fails inside the client in many ways (YAML errors, wrong shapes):
        # every one of them is this file's problem, reported as such.
        raise ClusterError(f"cannot read kubeconfig {files}: {exc}") from None
    if context is None:
        if not current:
            raise ClusterError(f"kubeconfig {files} has no current context; name one")
        return str(current["name"]), merged
    if context not in names:
        raise ClusterError(
            f"kubeconfig {files} has no context {context!r} (it has: {', '.join(names) or 'none'})"
        )
    return context, merged


def _missing_exec_plugin(merged: Any, context: str) -> str | None:
    """The exec credential plugin `context`'s user names, when it cannot be found.

    The client logs a missing plugin and goes on without credentials (kubernetes 37
    config/kube_config.py), so the server's 401 would read as an expired token. Only a
    bare command (found on PATH) or an absolute path is judged; a relative path is the
    client's to resolve.
    """
    try:
        user_name = merged["contexts"].get_with_name(context)["context"]["user"]
        user = merged["users"].get_with_name(user_name)["user"]
        plugin = user.safe_get("exec")
        command = plugin.get("command") if isinstance(plugin, dict) else None
    except Exception:  # a broken file: the client says so in its own words
        return None
    if not isinstance(command, str) or not command:
        return None
    if "/" in command and not command.startswith("/"):
        return None
    return command if shutil.which(command) is None else None


def _status_message(exc: ApiException) -> str:
    """The metav1.Status message the server sent, else the HTTP reason."""
    try:
        body = json.loads(exc.body or "")
        message = body.get("message") if isinstance(body, dict) else None
    except (ValueError, TypeError):
        message = None
    return str(message or exc.reason or "no message")


@dataclass
class Cluster:
    """One kubeconfig context. Discovery results are cached for the client's lifetime."""

    context: str
    host: str
    api: k8s.ApiClient
    _resources: dict[str, dict[str, str] | None] = field(default_factory=dict)

    # ------------------------------------------------------------------ errors

    def _fail(self, exc: BaseException, what: str) -> ClusterError:
        where = f"context {self.context!r} ({self.host})"
        if isinstance(exc, ApiException):
            message = _status_message(exc)
            if exc.status == 401:
                return ClusterError(
                    f"{where} rejected the credentials while {what} "
                    f"(401 Unauthorized: {message}); the token may have expired"
                )
            if exc.status == 403:
                return ClusterError(
                    f"{where} forbids {what} (403 Forbidden: {message}); grant the "
                    "read-only status RBAC (see `servegen status` in the README)"
                )
            return ClusterError(f"{where} failed {what} ({exc.status}: {message})")
        reason = getattr(exc, "reason", None) or exc
        return ClusterError(f"cannot reach the API server of {where} while {what}: {reason}")

    def _get(self, path: str, query: list[tuple[str, Any]], read_timeout: float) -> Any:
        """GET `path` with the client's auth; the unread urllib3 response (2xx only).

        ApiClient is used directly, not the generated API classes: importing CoreV1Api
        alone costs seconds, and the objects are wanted as JSON anyway.
        """
        method, url, headers, body, post = self.api.param_serialize(
            method="GET",
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(
            method,
            url,
            header_params=headers,
            body=body,
            post_params=post,
            _request_timeout=(CONNECT_TIMEOUT, read_timeout),
        )
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def _json(self, what: str, path: str, query: list[tuple[str, Any]]) -> Any:
        """GET and parse; ApiException for HTTP errors, ClusterError for transport ones."""
        try:
            response = self._get(path, query, READ_TIMEOUT)
            return json.loads(response.data)
        except ApiException:
            raise
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(exc, what) from None
        except ValueError as exc:
            raise ClusterError(f"context {self.context!r}: {what}: not JSON ({exc})") from None

    def read(self, path: str, what: str) -> bytes | None:
        """The raw JSON body at `path`, or None when the server answers 404 Not Found."""
        try:
            return bytes(self._get(path, [], READ_TIMEOUT).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._fail(exc, what) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(exc, what) from None

    # ------------------------------------------------------------------ discovery

    def plural(self, kind: Kind) -> str | None:
        """The resource name serving `kind`, or None when the cluster does not serve it."""
        if kind.api_version not in self._resources:
            self._resources[kind.api_version] = self._discover(kind)
        served = self._resources[kind.api_version]
        return None if served is None else served.get(kind.kind)

    def forget(self, kind: Kind) -> None:
        """Drop what discovery said about `kind`'s group/version: the next list asks
        again (a CRD installed since is then found)."""
        self._resources.pop(kind.api_version, None)

    def _discover(self, kind: Kind) -> dict[str, str] | None:
        what = f"discovering {kind.api_version}"
        try:
            body = self._json(what, _group_path(kind), [])
        except ApiException as exc:
            if exc.status == 404:
                return None  # the group/version is not installed (no CRD)
            raise self._fail(exc, what) from None
        resources = body.get("resources") if isinstance(body, dict) else None
        out: dict[str, str] = {}
        for resource in resources if isinstance(resources, list) else []:
            if isinstance(resource, dict) and "/" not in str(resource.get("name", "/")):
                out.setdefault(str(resource.get("kind")), str(resource["name"]))
        return out

    # ------------------------------------------------------------------ list and watch

    def list(self, kind: Kind, namespace: str) -> Listing | None:
        """Every `kind` object in `namespace`; None when the cluster does not serve `kind`."""
        plural = self.plural(kind)
        if plural is None:
            return None
        what = f"listing {plural} in namespace {namespace!r}"
        try:
            body = self._json(what, _collection_path(kind, namespace, plural), [])
        except ApiException as exc:
            raise self._fail(exc, what) from None
        listing = parse_listing(body)
        if listing is None:
            raise ClusterError(f"context {self.context!r}: {what}: not a list")
        return listing

    def watch(
        self, kind: Kind, namespace: str, resource_version: str, timeout: int
    ) -> Iterator[WatchEvent]:
        """Changes after `resource_version`, for at most `timeout` seconds (server-side)."""
        plural = self.plural(kind)
        if plural is None:
            return
        what = f"watching {plural} in namespace {namespace!r}"
        path = _collection_path(kind, namespace, plural)

        def request(**kwargs: Any) -> Any:
            # Called by Watch.stream with watch=True and the query arguments below.
            query = [
                ("allowWatchBookmarks", "true"),
                ("resourceVersion", kwargs["resource_version"]),
                ("timeoutSeconds", kwargs["timeout_seconds"]),
                ("watch", "true"),
            ]
            return self._get(path, query, kwargs["timeout_seconds"] + READ_TIMEOUT)

        try:
            for event in k8s_watch.Watch().stream(
                request, resource_version=resource_version, timeout_seconds=max(1, timeout)
            ):
                parsed = parse_event(event)
                if parsed is not None:
                    yield parsed
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc)) from None
            raise self._fail(exc, what) from None
        except urllib3.exceptions.ProtocolError as exc:
            raise Interrupted(str(exc)) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._fail(exc, what) from None


def _group_path(kind: Kind) -> str:
    return f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"


def _collection_path(kind: Kind, namespace: str, plural: str) -> str:
    return f"{_group_path(kind)}/namespaces/{namespace}/{plural}"


def parse_listing(body: Any) -> Listing | None:
    """A list response's named objects and resourceVersion; None when `body` is not a
    list of objects (apimachinery's metav1.List: `items`, `metadata.resourceVersion`).
    Items without a name are left out, as a watch leaves them out."""
    if not isinstance(body, dict):
        return None
    items = body.get("items")
    metadata = body.get("metadata")
    if not isinstance(items if items is not None else [], list):
        return None
    if not isinstance(metadata if metadata is not None else {}, dict):
        return None
    named = {
        item["metadata"]["name"]: item
        for item in items or ()
        if isinstance(item, dict)
        and isinstance(item.get("metadata"), dict)
        and isinstance(item["metadata"].get("name"), str)
    }
    version = (metadata or {}).get("resourceVersion")
    return Listing(named, version if isinstance(version, str) else "")


def parse_event(event: Any) -> WatchEvent | None:
    # The list functions return Any, so the client hands events over undeserialised.
    if not isinstance(event, dict):
        return None
    obj = event.get("raw_object", event.get("object"))
    if event.get("type") == "ERROR" and isinstance(obj, dict):
        # A metav1.Status: its code is an HTTP status (410 Gone: the version is too old).
        code = obj.get("code")
        status = code if isinstance(code, int) and not isinstance(code, bool) else 500
        raise ApiException(status=status, reason=str(obj.get("message")))
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return None
    if event.get("type") == "BOOKMARK":  # only moves the resourceVersion on
        return WatchEvent("BOOKMARK", "", obj)
    name = obj["metadata"].get("name")
    if event.get("type") not in ("ADDED", "MODIFIED", "DELETED") or not isinstance(name, str):
        return None
    return WatchEvent(str(event["type"]), name, obj)
