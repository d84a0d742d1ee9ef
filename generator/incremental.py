"""Incremental builds for watch mode: re-do only what a batch of changed paths affects.

`IncrementalBuild` keeps, per spec file, the digest of its bytes and everything derived
from them (validated specs, rendered models, their files, manifest-check results). A
batch re-reads only the paths it is given; a file whose bytes did not change costs a
read and a hash. What needs every spec at once is recomputed over the cached models
each batch, with the very functions `build()` uses: unique names, duplicate objects,
the README, and the cluster files (those only when their inputs changed: they are the
one slow part). Manifest checks run for changed models only, except that the Flux
objects, which list every model, are checked again whenever they change.

The contract: after any sequence of batches the output folder holds exactly what a
one-shot `servegen render` of the same tree writes, byte for byte. While anything is
invalid nothing is written at all, so the folder stays at the last good state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from generator.config import CONFIG_FILE, Config
from generator.errors import Diagnostic, RenderError
from generator.flux import flux_objects
from generator.layout import cluster_files, index_markdown, model_files
from generator.load import (
    MAX_FILE_BYTES,
    SourceFile,
    discover,
    file_error,
    is_spec_file,
    parse_source,
    read_source,
)
from generator.pipeline import check_models, crd_sources
from generator.render import ModelRender, duplicate_objects, render_spec
from generator.statusplan import rbac_files
from generator.validate import Spec, check_repository, load_config, validate_file
from generator.write import write_tree


@dataclass(frozen=True)
class ModelOutput:
    """One rendered spec and its files under models/<name>/."""

    render: ModelRender
    files: Mapping[str, bytes]


@dataclass(frozen=True)
class FileState:
    """One spec file as last read, and everything derived from those bytes."""

    digest: bytes
    specs: tuple[Spec, ...]
    models: tuple[ModelOutput, ...]
    problems: tuple[Diagnostic, ...]  # reading, validation and rendering
    checks: tuple[Diagnostic, ...] = ()  # manifest validation of the rendered objects
    volatile: bool = False  # a symlink: its target may change unseen, so re-read each batch


@dataclass(frozen=True)
class BatchResult:
    """What one batch changed, or why nothing was written."""

    changed: tuple[str, ...]  # repository paths whose content changed, appeared or vanished
    rendered: tuple[str, ...]  # models rendered again
    written: tuple[str, ...]  # output paths written
    removed: tuple[str, ...]  # output paths removed
    diagnostics: tuple[Diagnostic, ...]  # when not empty, nothing was written
    models: int
    elapsed_ms: float
    full: bool = False  # everything was rebuilt (start, or servegen.yaml changed)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


class IncrementalBuild:
    """The repository at `root`, rendered into its output folder batch by batch."""

    def __init__(self, root: Path, *, out: Path | None = None, crds: Sequence[Path] = ()):
        self.root = root.resolve()
        self._out_override = out.resolve() if out is not None else None
        self._crds = tuple(crds)
        self.config = Config()  # the last valid one: it decides which paths matter
        self._config_problems: tuple[Diagnostic, ...] = ()
        self._files: dict[str, FileState] = {}
        self._stale = True  # rebuild everything at the next batch
        self._last_problems: tuple[Diagnostic, ...] = ()
        self._flux: list[list[dict[str, Any]]] | None = None  # the Flux objects last checked
        self._flux_checks: tuple[Diagnostic, ...] = ()
        self._cluster: tuple[object, dict[str, bytes]] | None = None  # key, cluster_files()
        self._written: dict[str, bytes] | None = None  # None: unknown, compare with disk
        self._written_out: Path | None = None
        self.generation = 0  # bumped whenever the output folder changes

    @property
    def out(self) -> Path:
        return self._out_override or self.root / self.config.output

    @property
    def spec_root(self) -> Path:
        return self.root / self.config.specs

    # --- batches --------------------------------------------------------------------

    @property
    def files(self) -> dict[str, bytes]:
        """The output tree last written (empty before the first good build)."""
        return dict(self._written or {})

    def initial(self) -> BatchResult:
        """Read, render and write everything; the output folder is compared with disk."""
        self.reset()
        return self.apply(())

    def reset(self) -> None:
        """Forget every cache: the next batch rebuilds from scratch (after an internal error)."""
        self._files, self._flux, self._cluster = {}, None, None
        self._written = None
        self._stale = True

    def apply(self, paths: Iterable[Path | str]) -> BatchResult:
        """Process paths that may have changed: each is re-read as it is now."""
        started = time.perf_counter()
        relatives = {rel for rel in map(self._relative, paths) if rel is not None}
        if CONFIG_FILE in relatives or self._config_problems or self._stale:
            changed = self._reload_config() or self._stale
            if self._config_problems:
                return self._failed(started, (CONFIG_FILE,), self._config_problems)
            if changed:
                return self._rebuild(started)
        return self._update(started, self._candidates(relatives))

    # --- servegen.yaml ----------------------------------------------------------------

    def _reload_config(self) -> bool:
        """Load servegen.yaml; True when a valid config differs from the current one."""
        was_broken = bool(self._config_problems)
        config, problems = load_config(self.root)
        # Warnings (e.g. an image outside the supported range) do not break the config.
        problems = [p for p in problems if p.severity == "error"]
        self._config_problems = tuple(problems)
        if problems:
            return False
        changed = was_broken or config != self.config
        self.config = config
        return changed

    def _rebuild(self, started: float) -> BatchResult:
        # A config change can alter how every spec validates and renders: drop everything.
        self._files, self._flux, self._cluster, self._stale = {}, None, None, False
        result = self._update(started, self._scan_all(), full=True)
        changed = tuple(sorted({CONFIG_FILE, *result.changed}))
        return dataclasses.replace(result, changed=changed)

    # --- which spec files a batch touches ------------------------------------------------

    def _relative(self, path: Path | str) -> str | None:
        absolute = Path(path) if Path(path).is_absolute() else self.root / path
        try:
            rel = absolute.relative_to(self.root).as_posix()
        except ValueError:
            return None
        return "" if rel == "." else rel

    def _candidates(self, relatives: Iterable[str]) -> set[str]:
        """Spec paths to re-read: reported files, and every file in reported folders.

        A reported folder may have been moved away or in whole (one event for all its
        files), and a replaced spec folder loses the files known under it.
        """
        spec_dir = self.config.specs
        out = {rel for rel, state in self._files.items() if state.volatile}
        for rel in relatives:
            if _within(rel, spec_dir):  # the spec folder itself, or a parent, was replaced
                return out | self._scan_all()
            if not _within(spec_dir, rel):
                continue
            out.add(rel)
            out.update(known for known in self._files if known.startswith(rel + "/"))
            folder = self.root / rel
            if folder.is_dir() and not folder.is_symlink():
                out.update(self._discover(rel))
        return out

    def _scan_all(self) -> set[str]:
        return set(self._files) | set(self._discover(self.config.specs))

    def _discover(self, folder: str) -> Iterator[str]:
        for path in discover(self.root, folder):
            yield path.relative_to(self.root).as_posix()

    def _is_spec(self, rel: str) -> bool:
        """Whether `discover()` would list `rel` now (it does not follow linked folders)."""
        parts = PurePosixPath(rel).relative_to(self.config.specs).parts
        if any(part.startswith(".") for part in parts[:-1]) or not is_spec_file(parts[-1]):
            return False
        folder = self.spec_root
        for part in parts[:-1]:
            folder = folder / part
            if folder.is_symlink() or not folder.is_dir():
                return False
        path = folder / parts[-1]
        return (path.is_symlink() or path.exists()) and not path.is_dir()

    def _spec_root_problem(self) -> Diagnostic | None:
        # The same refusal as load_specs: a linked spec folder must stay in the repository.
        base = self.spec_root
        if base.is_symlink() and not base.resolve().is_relative_to(self.root):
            return file_error(self.config.specs, "spec folder is a symlink outside the repository")
        return None

    # --- per file ---------------------------------------------------------------------

    def _update(self, started: float, candidates: Iterable[str], full: bool = False) -> BatchResult:
        changed: list[str] = []
        fresh: list[str] = []
        usable = self._spec_root_problem() is None and self.spec_root.is_dir()
        for rel in sorted(candidates):
            if self._refresh(rel, usable):
                changed.append(rel)
                if rel in self._files:
                    fresh.append(rel)
        notes = self._check(fresh)
        if not changed and not full:  # touched but identical: the last verdict stands
            count = len(self._models())
            return BatchResult((), (), (), (), self._last_problems, count, _ms(started))
        rendered = tuple(m.render.name for rel in fresh for m in self._files[rel].models)
        # Notes count skipped objects: only a full check's counts are the whole story.
        return self._finish(started, tuple(changed), rendered, full, notes if full else ())

    def _refresh(self, rel: str, usable: bool) -> bool:
        """Re-read one path; True when what it contributes changed."""
        old = self._files.get(rel)
        if not (usable and self._is_spec(rel)):
            return self._files.pop(rel, None) is not None
        digest, source, volatile = read_spec(self.root, self.root / rel)
        if old is not None and old.digest == digest:
            return False
        self._files[rel] = self._derive(digest, source, volatile)
        return True

    def _derive(self, digest: bytes, source: SourceFile | Diagnostic, volatile: bool) -> FileState:
        if isinstance(source, Diagnostic):
            return FileState(digest, (), (), (source,), volatile=volatile)
        result = validate_file(source, self.config)
        models, problems = [], list(result.diagnostics)
        for spec in result.specs:
            try:
                rendered = render_spec(spec, self.config)
            except RenderError as exc:
                line, col = spec.document.position(("name",))
                message = exc.message.removeprefix(f"{spec.path}: ")
                problems.append(Diagnostic(spec.path, line, col, "", message))
                continue
            models.append(ModelOutput(rendered, model_files(rendered)))
        return FileState(digest, result.specs, tuple(models), tuple(problems), volatile=volatile)

    def _check(self, rels: Sequence[str]) -> tuple[str, ...]:
        """Validate freshly rendered objects against the cluster's schemas.

        The Flux objects list every model in their health checks, so check_models judges
        them right only when given every model: that full check runs when they change.
        """
        renders = [m.render for m in self._models()]
        flux = [flux_objects(renders, self.config, env) for env in self.config.environments]
        everything = flux != self._flux
        if everything:
            rels, self._flux = list(self._files), flux
        models = [m.render for rel in rels for m in self._files[rel].models]
        if not models and not everything:
            return ()
        sources = crd_sources(self.root, self.config, self._crds)
        diagnostics, notes = check_models(models, self.config, sources)
        by_file: dict[str, list[Diagnostic]] = {}
        for diagnostic in diagnostics:  # at the spec's own path, or servegen.yaml for Flux
            by_file.setdefault(diagnostic.path, []).append(diagnostic)
        for rel in rels:
            state = self._files[rel]
            self._files[rel] = dataclasses.replace(state, checks=tuple(by_file.get(rel, ())))
        if everything:
            self._flux_checks = tuple(by_file.get(CONFIG_FILE, ()))
        return tuple(notes)

    # --- the whole repository -------------------------------------------------------------

    def _ordered(self) -> list[FileState]:
        # discover() order, so cross-file diagnostics read exactly as a one-shot run's.
        return [self._files[rel] for rel in sorted(self._files, key=_walk_order)]

    def _models(self) -> list[ModelOutput]:
        models = (m for state in self._files.values() for m in state.models)
        return sorted(models, key=lambda m: m.render.name)  # render_all's order

    def _problems(self) -> tuple[Diagnostic, ...]:
        """Every reason a one-shot render would fail now, in the order it would stop."""
        root_problem = self._spec_root_problem()
        if root_problem is not None:
            return (root_problem,)
        states = self._ordered()
        found = [d for state in states for d in state.problems]
        found += check_repository([spec for state in states for spec in state.specs])
        if not _errors(found):
            found += duplicate_objects([m.render for m in self._models()], self.config)
        if not _errors(found):
            found += [d for state in states for d in state.checks]
            found += self._flux_checks
        return tuple(sorted(set(found)))

    def _finish(
        self,
        started: float,
        changed: tuple[str, ...],
        rendered: tuple[str, ...],
        full: bool,
        notes: tuple[str, ...],
    ) -> BatchResult:
        problems = self._last_problems = self._problems()
        if _errors(problems):
            return self._failed(started, changed, problems, rendered, full)
        models = self._models()
        written, removed = self._write(self._assemble(models))
        return BatchResult(
            changed, rendered, written, removed, (), len(models), _ms(started), full, notes
        )

    def _failed(
        self,
        started: float,
        changed: tuple[str, ...],
        problems: tuple[Diagnostic, ...],
        rendered: tuple[str, ...] = (),
        full: bool = False,
    ) -> BatchResult:
        self._last_problems = problems
        count = len(self._models())
        return BatchResult(changed, rendered, (), (), problems, count, _ms(started), full)

    def _assemble(self, models: Sequence[ModelOutput]) -> dict[str, bytes]:
        """layout(), with each model's files taken from the cache."""
        files: dict[str, bytes] = {}
        for model in models:
            files.update(model.files)
        renders = [m.render for m in models]
        files.update(self._cluster_files(renders))
        files.update(rbac_files(renders, self.config))  # empty unless status_reader is set
        files["README.md"] = index_markdown(renders, self.config).encode()
        return files

    def _cluster_files(self, renders: Sequence[ModelRender]) -> Mapping[str, bytes]:
        """cluster_files(), again only when what it reads of the models changed.

        It dumps the Flux objects, whose health checks list every model, and the endpoint
        catalog: ~120 ms for 1,000 models, while most edits change neither. What it reads
        of the models is their names, environments and endpoints, and (through
        flux_objects) the Flux objects: that is the key. Tests compare with layout().
        """
        key = (
            [(m.name, [(env, r.endpoint) for env, r in m.environments.items()]) for m in renders],
            self._flux,
        )
        if self._cluster is None or self._cluster[0] != key:
            self._cluster = (key, cluster_files(renders, self.config))
        return self._cluster[1]

    # --- the output folder ----------------------------------------------------------------

    def _write(self, files: dict[str, bytes]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Write what differs from the last written tree; the first time, compare with disk."""
        out = self.out
        # The whole tree is swapped in at once (a crash leaves old or new, never a mix);
        # bytes this watcher wrote last time are trusted instead of read back.
        known = self._written if self._written_out == out else None
        stats = write_tree(out, files, known=known)
        written, removed = stats.written, stats.removed
        self._written, self._written_out = files, out
        if written or removed:
            self.generation += 1
        return written, removed


# --- helpers ------------------------------------------------------------------------------


def read_spec(root: Path, path: Path) -> tuple[bytes, SourceFile | Diagnostic, bool]:
    """(digest, parsed file or its problem, volatile), as `read_source` would judge it.

    The digest is of the very bytes parsed, so a file that changes while it is read is
    parsed again by the next batch. Symlinks, oversized and unreadable files are left to
    `read_source` for its checks and messages.
    """
    linked = path.is_symlink()
    try:
        info = path.stat()
        # Only regular files are read here: a FIFO would block forever (read_source says so).
        if not linked and stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES:
            data = path.read_bytes()
            return _digest(data), parse_source(path.relative_to(root).as_posix(), data), False
    except OSError:
        pass  # read_source words the error
    judged = read_source(root, path)
    if isinstance(judged, Diagnostic):
        return _digest(str(judged).encode()), judged, linked
    try:
        return _digest(path.read_bytes()), judged, linked  # a link read_source found safe
    except OSError as exc:  # replaced since: the next batch reads it again
        return _digest(str(exc).encode()), judged, linked


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def _within(parent: str, rel: str) -> bool:
    """Whether `rel` is `parent` or inside it ("" is the repository root)."""
    return parent in ("", ".") or rel == parent or rel.startswith(parent.rstrip("/") + "/")


def _walk_order(rel: str) -> tuple[tuple[int, str], ...]:
    """Sort key matching os.walk(topdown) with sorted names: a folder's files first."""
    *folders, name = rel.split("/")
    return (*((1, folder) for folder in folders), (0, name))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
