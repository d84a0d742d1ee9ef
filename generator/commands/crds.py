"""`servegen crds`: list the CRDs custom resources are validated against, or fetch newer ones.

Listing shows the bundled CRDs (kind, group, served versions, upstream release, sha256)
and any configured ones (`validation.crds`, `--crds`), marking bundled CRDs a configured
one replaces. `--refresh URL` fetches a CRD into a folder of the spec repository
(`--into`, default `crds/`) that `validation.crds` then lists; `--from-cluster` fetches
the bundled kinds' CRDs from the cluster of the current kubeconfig context.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from generator import crds, terminal
from generator.config import CONFIG_FILE
from generator.errors import EXIT_OK, InvalidInputError, counted, inert_json
from generator.options import CrdsOptions
from generator.pipeline import crd_sources
from generator.validate import load_config


@dataclass(frozen=True)
class Row:
    kind: str
    group: str
    versions: str
    source: str  # "bundled" or the configured file
    release: str
    sha256: str
    used: bool


def run(options: CrdsOptions) -> int:
    if options.refresh or options.from_cluster:
        return _refresh(options)
    rows = _rows(options)
    if options.format == "json":
        print(inert_json(json.dumps([asdict(row) for row in rows], indent=2)))
        return EXIT_OK
    table = terminal.table("kind", "group", "versions", "source", "release", "sha256")
    for row in rows:
        source = row.source if row.used else f"{row.source} (replaced)"
        table.add_row(row.kind, row.group, row.versions, source, row.release, row.sha256[:16])
    terminal.print_table(table, options.common.color)
    replaced = sum(1 for row in rows if not row.used)
    terminal.summary(
        f"{counted(len(rows), 'CRD')}: {len(rows) - replaced} in use, "
        f"{replaced} replaced by configured ones",
        color=options.common.color,
    )
    return EXIT_OK


def _rows(options: CrdsOptions) -> list[Row]:
    root = options.common.root
    config, problems = load_config(root)
    if any(d.severity == "error" for d in problems):
        raise InvalidInputError(problems)
    configured: list[Row] = []
    for path in crds.crd_files(crd_sources(root, config, options.crds)):
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        for crd in crds.summarize(data, str(path)):
            versions = ", ".join(crd.versions)
            configured.append(Row(crd.kind, crd.group, versions, str(path), "-", digest, True))
    defined = {(row.group, row.kind) for row in configured}
    bundled = [
        Row(
            entry.kind,
            entry.group,
            ", ".join(entry.versions),
            "bundled",
            entry.release,
            entry.sha256,
            (entry.group, entry.kind) not in defined,
        )
        for entry in crds.bundled()
    ]
    return configured + bundled


def _refresh(options: CrdsOptions) -> int:
    into = options.into
    fetched = crds.refresh(list(options.refresh), into) if options.refresh else []
    if options.from_cluster:
        live, missing = crds.from_cluster(into)
        fetched += live
        for name in missing:
            terminal.note(f"the cluster has no CRD {name}", color=options.common.color)
    for item in fetched:
        kinds = ", ".join(f"{c.kind} ({c.group} {'/'.join(c.versions)})" for c in item.crds)
        state = "written" if item.changed else "unchanged"
        print(f"{item.path}: {kinds}, sha256 {item.sha256} ({state})")
    folder = _as_config_entry(into, options.common.root)
    terminal.summary(
        f"fetched {counted(len(fetched), 'CRD')} into {into}; list {folder!r} under "
        f"validation.crds in {CONFIG_FILE} to validate against them",
        color=options.common.color,
    )
    return EXIT_OK


def _as_config_entry(into: Path, root: Path) -> str:
    try:
        return into.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(into)
