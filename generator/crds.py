"""The upstream CRDs servegen ships, and fetching newer ones into a spec repository.

The bundled CRDs (schemas/crds/, package data) validate every custom resource servegen
renders with no configuration. `validation.crds` and `--crds` add CRDs; one that defines
the same kind (group and kind) as a bundled CRD replaces it (generator/crdschemas.py
turns CRD files into schemas).

`SOURCES.toml` beside the files records where each came from (repository, path, commit,
release) and its sha256; `servegen crds` lists them and `verify_bundled()` checks them.
"""

from __future__ import annotations

import hashlib
import os
import time
import tomllib
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schemas
from generator.errors import ServegenError, cut, printable
from generator.k8sformats import DNS1123_SUBDOMAIN
from generator.urls import CREDENTIALS_PROBLEM, url_problem
from generator.yamlio import YamlSyntaxError, load_documents

SOURCES_FILE = "SOURCES.toml"  # not .yaml/.json: a --crds scan of this folder skips it
MAX_CRD_BYTES = 16 * 1024 * 1024  # the KServe CRD is 2 MB; anything far larger is not a CRD
FETCH_TIMEOUT_S = 30
CRD_SUFFIXES = (".yaml", ".yml", ".json")  # what a folder of CRDs is searched for


@dataclass(frozen=True)
class BundledCrd:
    """One bundled CRD file and the facts recorded about it."""

    file: str
    kind: str
    group: str
    versions: tuple[str, ...]
    repository: str
    path: str
    commit: str
    release: str
    sha256: str
    url: str

    @property
    def location(self) -> Path:
        return bundled_dir() / self.file

    @property
    def name(self) -> str:
        """The CRD's metadata.name, `<plural>.<group>` (the file is `<group>_<plural>.yaml`)."""
        plural = self.file.removeprefix(f"{self.group}_").removesuffix(".yaml")
        return f"{plural}.{self.group}"


@dataclass(frozen=True)
class CrdSummary:
    """What a CRD file defines: its kind, group and served versions."""

    kind: str
    group: str
    versions: tuple[str, ...]
    name: str  # metadata.name, `<plural>.<group>`


def bundled_dir() -> Path:
    return Path(schemas.__file__).parent / "crds"


def bundled() -> tuple[BundledCrd, ...]:
    with (bundled_dir() / SOURCES_FILE).open("rb") as handle:
        entries: list[dict[str, Any]] = tomllib.load(handle)["crd"]
    return tuple(
        BundledCrd(
            file=e["file"],
            kind=e["kind"],
            group=e["group"],
            versions=tuple(e["versions"]),
            repository=e["repository"],
            path=e["path"],
            commit=e["commit"],
            release=e["release"],
            sha256=e["sha256"],
            url=e["url"],
        )
        for e in entries
    )


def bundled_files() -> tuple[Path, ...]:
    return tuple(entry.location for entry in bundled())


def crd_files(sources: Sequence[Path]) -> Iterator[Path]:
    """The CRD files of configured sources: files as given, folders searched."""
    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix in CRD_SUFFIXES)
            if not found:
                raise ServegenError(f"CRD directory {source} contains no YAML or JSON files")
            yield from found
        elif source.is_file():
            yield source
        else:
            raise ServegenError(f"CRD source {source} does not exist")


def verify_bundled() -> list[str]:
    """Problems with the bundled files: missing, or a sha256 other than the recorded one."""
    problems = []
    for entry in bundled():
        try:
            digest = hashlib.sha256(entry.location.read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(f"{entry.file}: {exc.strerror}")
            continue
        if digest != entry.sha256:
            problems.append(f"{entry.file}: sha256 {digest}, recorded {entry.sha256}")
    return problems


def summarize(data: bytes, origin: str) -> list[CrdSummary]:
    """The CRDs in one YAML or JSON text; ServegenError when it holds none, or anything
    besides CRDs, or a CRD the API server would refuse by its name."""
    try:
        text = data.decode("utf-8")
        # The reader specs go through: strict, with aliases bounded.
        documents = [document.data for document in load_documents(text)]
    except UnicodeDecodeError as exc:
        raise ServegenError(f"{origin}: not a YAML CRD: not UTF-8 text") from exc
    except YamlSyntaxError as exc:
        raise ServegenError(
            f"{origin}: not a YAML CRD: {exc.line}:{exc.col}: {exc.message}"
        ) from None
    found = []
    others = []
    for doc in documents:
        if doc is None:
            continue  # an empty document (a trailing `---`)
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            others.append(doc.get("kind") if isinstance(doc, dict) else type(doc).__name__)
            continue
        try:
            spec, name = doc["spec"], str(doc["metadata"]["name"])
            versions = tuple(str(v["name"]) for v in spec["versions"] if v.get("served", True))
            kind, group = str(spec["names"]["kind"]), str(spec["group"])
            plural = str(spec["names"]["plural"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ServegenError(f"{origin}: malformed CustomResourceDefinition ({exc})") from exc
        # apiextensions-apiserver validation.go ValidateCustomResourceDefinition: the
        # name is <plural>.<group>, and servegen names the file after it.
        if name != f"{plural}.{group}":
            raise ServegenError(
                f"{origin}: CRD name {name!r:.80} is not <spec.names.plural>.<spec.group>"
            )
        found.append(CrdSummary(kind, group, versions, name))
    if not found:
        raise ServegenError(f"{origin}: contains no CustomResourceDefinition")
    if others:  # kept whole as a CRD file, it would carry them along
        raise ServegenError(f"{origin}: holds a {others[0]!s:.40} besides CRDs; only CRDs are kept")
    return found


def summarize_file(path: Path) -> list[CrdSummary]:
    return summarize(path.read_bytes(), str(path))


# --------------------------------------------------------------------------- refresh


@dataclass(frozen=True)
class Fetched:
    path: Path
    sha256: str
    crds: tuple[CrdSummary, ...]
    changed: bool


def shown_url(url: str) -> str:
    """`url` for messages: no user name or password, no query (a token may be there)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # a '[' or ']' around no IPv6 address: no part can be told apart
        return printable(f"{cut(url.partition(':')[0], 20)}:...")
    host = parts.netloc.rpartition("@")[2]  # as written: `.port` raises on a bad one
    query = "?..." if parts.query else ""
    return printable(urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + query)


def fetch_url(url: str) -> bytes:
    """The body at an http(s) URL, at most MAX_CRD_BYTES, within FETCH_TIMEOUT_S in all.

    Redirects are followed to http(s) only, and never from https down to http.
    """
    import urllib.error  # imported here: only --refresh fetches
    import urllib.request

    shown = shown_url(url)
    if not url.startswith(("https://", "http://")):
        raise ServegenError(f"--refresh {shown}: only http:// and https:// URLs are fetched")
    problem = url_problem(url)
    if problem == CREDENTIALS_PROBLEM or (
        problem is None and urllib.parse.urlsplit(url).username is not None
    ):
        raise ServegenError(
            f"--refresh {shown}: a user name or password in the URL is refused (it would be "
            "printed with every message); fetch a public URL"
        )
    if problem:
        raise ServegenError(f"--refresh {shown} {problem}")
    opener = urllib.request.build_opener(_safe_redirects())
    request = urllib.request.Request(url, headers={"User-Agent": "servegen"})  # noqa: S310
    deadline = time.monotonic() + FETCH_TIMEOUT_S
    chunks: list[bytes] = []
    size = 0
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT_S) as response:
            # read1: at most one read of the socket, so a server that sends a byte at a
            # time cannot hold one call (each waits FETCH_TIMEOUT_S at most) past the
            # deadline.
            while chunk := response.read1(1 << 16):
                size += len(chunk)
                if size > MAX_CRD_BYTES:
                    raise ServegenError(
                        f"--refresh {shown}: larger than {MAX_CRD_BYTES // 2**20} MiB"
                    )
                if time.monotonic() > deadline:
                    raise ServegenError(
                        f"--refresh {shown}: not fetched within {FETCH_TIMEOUT_S} s"
                    )
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        reason = str(exc.reason).split("\n", 1)[0]  # a redirect loop's text spans lines
        raise ServegenError(f"--refresh {shown}: HTTP {exc.code} {printable(reason)}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc)).split("\n", 1)[0]
        raise ServegenError(f"--refresh {shown}: cannot fetch: {printable(reason)}") from exc
    return b"".join(chunks)


def _safe_redirects() -> Any:
    """A redirect handler that follows http(s) only, never from https down to http."""
    import urllib.request  # imported here: only --refresh fetches (http.client, ssl...)

    class SafeRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(
            self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
        ) -> Any:
            old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
            downgrade = (old.scheme, new.scheme) == ("https", "http")
            if new.scheme not in ("http", "https") or downgrade:
                raise ServegenError(
                    f"--refresh {shown_url(req.full_url)}: redirected to {shown_url(newurl)}, "
                    "which is not fetched (only http(s), never from https down to http)"
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return SafeRedirects()


# A file name's limit on Linux file systems, less what _write() adds for its temporary file.
_MAX_FILE_NAME = 255 - len("..tmp") - 10


def _target(
    data: bytes, directory: Path, origin: str, suffix: str
) -> tuple[Path, list[CrdSummary]]:
    """Where _write() puts a fetched CRD text: `<group>_<plural>.yaml` in `directory`.

    The file name comes from the CRD's own `metadata.name`, checked to be a DNS
    subdomain, so a hostile document cannot name a path outside `directory`.
    """
    crds = summarize(data, origin)
    names = {crd.name for crd in crds}
    if len(names) != 1:
        raise ServegenError(f"{origin}: holds {len(names)} CRDs; fetch one CRD per URL")
    name = names.pop()
    if not DNS1123_SUBDOMAIN.matches(name) or "." not in name:
        raise ServegenError(
            f"{origin}: CRD name {name!r} {DNS1123_SUBDOMAIN.help}, <plural>.<group>"
        )
    plural, _, group = name.partition(".")
    file_name = f"{group}_{plural}{suffix}"
    if len(file_name) > _MAX_FILE_NAME:
        raise ServegenError(f"{origin}: CRD name {name[:60]!r}... is too long for a file name")
    return directory / file_name, crds


def _write(target: Path, data: bytes, crds: Sequence[CrdSummary]) -> Fetched:
    changed = not target.is_file() or target.read_bytes() != data
    if changed:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ServegenError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return Fetched(target, hashlib.sha256(data).hexdigest(), tuple(crds), changed)


def _store_all(bodies: Sequence[tuple[str, bytes]], directory: Path, suffix: str) -> list[Fetched]:
    """Check every text and where it goes, then write them: one that fails writes nothing."""
    planned = []
    seen: dict[Path, str] = {}
    for origin, data in bodies:
        target, crds = _target(data, directory, origin, suffix)
        if target in seen:
            raise ServegenError(f"{origin} and {seen[target]} both hold {target.name}")
        seen[target] = origin
        planned.append((target, data, crds))
    return [_write(target, data, crds) for target, data, crds in planned]


def refresh(urls: list[str], directory: Path) -> list[Fetched]:
    """Fetch every URL, check every CRD, then store them: a failure writes nothing."""
    bodies = [(f"--refresh {shown_url(url)}", fetch_url(url)) for url in urls]
    return _store_all(bodies, directory, ".yaml")


def from_cluster(directory: Path) -> tuple[list[Fetched], list[str]]:
    """Store the CRDs of the bundled kinds as the cluster of the current kubeconfig
    context serves them (the same client and kubeconfig rules as `servegen status`); also
    return the names of those the cluster does not have. Every CRD is read and checked
    before any is written."""
    from generator import kube

    cluster = kube.connect(None)
    found = [
        (entry.name, cluster.read(f"{_CRD_API}/{entry.name}", f"reading CRD {entry.name}"))
        for entry in bundled()
    ]
    bodies = [(f"cluster CRD {name}", data) for name, data in found if data is not None]
    fetched = _store_all(bodies, directory, ".json")
    return fetched, [name for name, data in found if data is None]


_CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
