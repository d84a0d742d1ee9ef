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
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schemas
from generator.errors import ServegenError
from generator.k8sformats import DNS1123_SUBDOMAIN

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
    """The CRDs in one YAML or JSON text; ServegenError when it holds none."""
    from ruamel.yaml import YAML  # only `servegen crds` reads whole CRDs as YAML
    from ruamel.yaml.error import YAMLError

    try:
        text = data.decode("utf-8")
        documents = list(YAML(typ="safe", pure=False).load_all(text))
    except (UnicodeDecodeError, YAMLError, ValueError) as exc:
        raise ServegenError(f"{origin}: not a YAML CRD: {exc}") from exc
    found = []
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        try:
            spec, name = doc["spec"], str(doc["metadata"]["name"])
            versions = tuple(str(v["name"]) for v in spec["versions"] if v.get("served", True))
            found.append(CrdSummary(str(spec["names"]["kind"]), str(spec["group"]), versions, name))
        except (KeyError, TypeError) as exc:
            raise ServegenError(f"{origin}: malformed CustomResourceDefinition ({exc})") from exc
    if not found:
        raise ServegenError(f"{origin}: contains no CustomResourceDefinition")
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


def fetch_url(url: str) -> bytes:
    """The body at an http(s) URL, at most MAX_CRD_BYTES."""
    import urllib.error  # imported here: only --refresh fetches
    import urllib.request

    if not url.startswith(("https://", "http://")):
        raise ServegenError(f"--refresh {url}: only http:// and https:// URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": "servegen"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310
            data: bytes = response.read(MAX_CRD_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ServegenError(f"--refresh {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServegenError(f"--refresh {url}: cannot fetch: {reason}") from exc
    if len(data) > MAX_CRD_BYTES:
        raise ServegenError(f"--refresh {url}: larger than {MAX_CRD_BYTES // 2**20} MiB")
    return data


def store(data: bytes, directory: Path, origin: str, suffix: str = ".yaml") -> Fetched:
    """Write a fetched CRD text into `directory` as `<group>_<plural>.yaml`.

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
    target = directory / f"{group}_{plural}{suffix}"
    changed = not target.is_file() or target.read_bytes() != data
    if changed:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return Fetched(target, hashlib.sha256(data).hexdigest(), tuple(crds), changed)


def refresh(urls: list[str], directory: Path) -> list[Fetched]:
    """Fetch every URL first, then store them: a failed fetch writes nothing."""
    bodies = [(url, fetch_url(url)) for url in urls]
    for url, data in bodies:
        summarize(data, url)
    return [store(data, directory, url) for url, data in bodies]


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
    bodies = [(name, data) for name, data in found if data is not None]
    for name, data in bodies:
        summarize(data, f"cluster CRD {name}")
    fetched = [store(data, directory, f"cluster CRD {name}", ".json") for name, data in bodies]
    return fetched, [name for name, data in found if data is None]


_CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
