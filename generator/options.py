"""Typed options for every command, built from argparse's namespace in one place.

Kept free of heavy imports: `servegen --help` must start fast. Immutable records as
NamedTuples: every command loads all twelve, and a frozen dataclass costs about five
times as much to define (six generated methods, each compiled at import): ~10 ms of
each start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

ReportFormat = Literal["text", "json", "github"]


class Common(NamedTuple):
    root: Path
    debug: bool = False
    color: bool | None = None  # None: only when writing to a terminal


class ValidateOptions(NamedTuple):
    common: Common
    format: ReportFormat = "text"
    crds: tuple[Path, ...] = ()


class InitOptions(NamedTuple):
    common: Common
    directory: Path
    force: bool = False
    overwrite: tuple[str, ...] = ()  # existing files --force may replace; others are kept


class SchemaOptions(NamedTuple):
    common: Common
    out: Path | None = None
    check: bool = False


class RenderOptions(NamedTuple):
    common: Common
    out: Path | None = None
    environment: str | None = None
    format: ReportFormat = "text"
    crds: tuple[Path, ...] = ()
    check: bool = False  # fail when the output folder is stale instead of writing


class EndpointsOptions(NamedTuple):
    common: Common
    environment: str | None = None
    format: Literal["table", "json"] = "table"


class DiffOptions(NamedTuple):
    common: Common
    base: str | None = None
    environment: str | None = None
    format: Literal["text", "markdown", "json"] = "text"
    output_file: Path | None = None
    max_chars: int = 60_000
    worktree: bool = True
    crds: tuple[Path, ...] = ()


class PublishOptions(NamedTuple):
    common: Common
    worktree: bool = False
    push: bool = False
    remote: str | None = None
    branch: str | None = None
    allow_prune: bool = False
    allow_replace: bool = False  # publish changes the cluster can only make by recreating
    sign: bool = False
    crds: tuple[Path, ...] = ()
    max_attempts: int = 10


class WatchOptions(NamedTuple):
    common: Common
    out: Path | None = None
    publish: bool = False
    push: bool = False
    remote: str | None = None
    allow_prune: bool = False
    debounce_ms: int = 50
    format: Literal["text", "json"] = "text"
    crds: tuple[Path, ...] = ()
    status: bool = False  # also follow the cluster's live state (servegen status)


class StatusOptions(NamedTuple):
    common: Common
    environments: tuple[str, ...] = ()
    format: Literal["text", "json", "markdown"] = "text"
    wait: bool = False
    timeout: float | None = None  # seconds; only with --wait (default 600)
    fetch: bool = True  # fetch the deploy branch from the remote first


class CrdsOptions(NamedTuple):
    common: Common
    crds: tuple[Path, ...] = ()
    refresh: tuple[str, ...] = ()
    from_cluster: bool = False
    into: Path = Path("crds")
    format: Literal["table", "json"] = "table"


class PromoteOptions(NamedTuple):
    common: Common
    names: tuple[str, ...] = ()
    source: str = ""
    target: str = ""
    all: bool = False
    serve: tuple[str, ...] = ()  # serve fields to promote besides the model version
    dry_run: bool = False
    commit: bool = False
    require_live: bool = False  # the source must be live (in sync, models ready)
