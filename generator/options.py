"""Typed options for every command, built from argparse's namespace in one place.

Kept free of heavy imports: `servegen --help` must start fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ReportFormat = Literal["text", "json", "github"]


@dataclass(frozen=True)
class Common:
    root: Path
    debug: bool = False
    color: bool | None = None  # None: only when writing to a terminal


@dataclass(frozen=True)
class ValidateOptions:
    common: Common
    format: ReportFormat = "text"
    crds: tuple[Path, ...] = ()


@dataclass(frozen=True)
class InitOptions:
    common: Common
    directory: Path
    force: bool = False
    overwrite: tuple[str, ...] = ()  # existing files --force may replace; others are kept


@dataclass(frozen=True)
class SchemaOptions:
    common: Common
    out: Path | None = None
    check: bool = False


@dataclass(frozen=True)
class RenderOptions:
    common: Common
    out: Path | None = None
    environment: str | None = None
    format: ReportFormat = "text"
    crds: tuple[Path, ...] = ()
    check: bool = False  # fail when the output folder is stale instead of writing


@dataclass(frozen=True)
class EndpointsOptions:
    common: Common
    environment: str | None = None
    format: Literal["table", "json"] = "table"


@dataclass(frozen=True)
class DiffOptions:
    common: Common
    base: str | None = None
    environment: str | None = None
    format: Literal["text", "markdown", "json"] = "text"
    output_file: Path | None = None
    max_chars: int = 60_000
    worktree: bool = True
    crds: tuple[Path, ...] = ()


@dataclass(frozen=True)
class PublishOptions:
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


@dataclass(frozen=True)
class WatchOptions:
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


@dataclass(frozen=True)
class StatusOptions:
    common: Common
    environments: tuple[str, ...] = ()
    format: Literal["text", "json", "markdown"] = "text"
    wait: bool = False
    timeout: float | None = None  # seconds; only with --wait (default 600)
    fetch: bool = True  # fetch the deploy branch from the remote first


@dataclass(frozen=True)
class CrdsOptions:
    common: Common
    crds: tuple[Path, ...] = ()
    refresh: tuple[str, ...] = ()
    from_cluster: bool = False
    into: Path = Path("crds")
    format: Literal["table", "json"] = "table"


@dataclass(frozen=True)
class PromoteOptions:
    common: Common
    names: tuple[str, ...] = ()
    source: str = ""
    target: str = ""
    all: bool = False
    serve: tuple[str, ...] = ()  # serve fields to promote besides the model version
    dry_run: bool = False
    commit: bool = False
    require_live: bool = False  # the source must be live (in sync, models ready)
