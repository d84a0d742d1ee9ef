"""The pipeline, load -> validate -> render -> check -> lay out, kept per spec file.

`Repository` holds, for each spec file, the digest of its bytes and everything derived
from them (validated specs, each model's summary, files and check results); what spans
every model (unique names, duplicate objects, the Flux objects and their check, the
cluster files, rbac, the README index, notes) is derived from those on demand. It is
the only implementation of the pipeline's rules:

- `build()` fills a Repository from scratch and returns the result, or raises; when
  only a few spec files changed since the repository's latest stored build, it
  refreshes just those (`Repository.delta()`) and keeps that build's cross-model
  results if their contribution to them is unchanged;
- `generator.incremental.IncrementalBuild` keeps one and refreshes the files a batch names.

Either way a model whose inputs did not change is taken from the persistent build cache
(generator/buildcache.py), so a new process reuses what an earlier one rendered. Nothing
here writes the output folder (generator/write.py does), so a failure at any step leaves
every output untouched.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import stat
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from generator import buildcache, outindex, progress, spool, wholebuild, workers
from generator.config import CONFIG_FILE, Config
from generator.errors import Diagnostic, InvalidInputError, RenderError
from generator.flux import flux_objects
from generator.layout import cluster_files, finish_layout, model_files
from generator.load import (
    MAX_FILE_BYTES,
    SourceFile,
    file_error,
    folder_problem,
    link_text_problem,
    listed_spec_files,
    parse_source,
    read_source,
    spec_files,
)
from generator.outtree import in_environment
from generator.render import ModelRender, duplicate_objects, render_spec, summary
from generator.validate import (
    SpecName,
    ValidatedSpec,
    duplicate_names,
    load_config,
    missing_spec_folder,
    validate_file,
)

if TYPE_CHECKING:
    from generator.check import ManifestChecker

Objects = list[list[dict[str, Any]]]
# What a worker process sends back for a spec file that passed (see Repository.update):
# its digest, build-cache key, buildcache.encode() of its result with the files' bytes
# apart, and wholebuild.contribution().
Derived = tuple[bytes, str, bytes, list[bytes], str]


@dataclass(frozen=True)
class Build:
    """A rendered and checked repository, ready to write or commit."""

    root: Path
    config: Config
    models: Sequence[ModelRender]
    files: Mapping[str, bytes]
    notes: tuple[str, ...]  # the warnings first (`path: message`), then check notes
    failed_files: frozenset[str]
    warnings: tuple[Diagnostic, ...] = ()  # what validation warned about
    # write.tree_digest() of `files` when known (a build from the build cache): lets
    # write_tree find an up-to-date output folder without looking at a file's bytes.
    tree: str | None = None
    # (objects, spec files) when known without looking at the models (the build cache).
    counts: tuple[int, int] | None = None
    # What it was made from, when the build cache was used: the build key (servegen,
    # config, CRDs) and each spec file's digest (wholebuild.spec_digest()). Two builds
    # under one key yield the same models from a spec file with the same digest.
    inputs: tuple[str, Mapping[str, bytes]] | None = None

    def object_count(self) -> int:
        if self.counts is not None:
            return self.counts[0]
        return sum(len(env.objects) for m in self.models for env in m.environments.values())

    def spec_file_count(self) -> int:
        """How many spec files the models come from."""
        if self.counts is not None:
            return self.counts[1]
        return len({model.path for model in self.models})


def crd_sources(root: Path, config: Config, extra: Sequence[Path] = ()) -> tuple[Path, ...]:
    configured = [root / p for p in config.validation.crds]  # relative: see config.py
    return tuple(configured) + tuple(Path(p) for p in extra)


@cache
def _checker(version: str, sources: tuple[Path, ...], kubeconform: str) -> ManifestChecker:
    # Imported on first use: schema loading is the slowest part of start-up.
    from generator.check import ManifestChecker
    from generator.crds import bundled_files

    return ManifestChecker(version, sources, kubeconform=kubeconform, bundled_crds=bundled_files())


# --- what one spec file contributes ---------------------------------------------------------


@dataclass(frozen=True)
class ModelOutput:
    """One spec rendered, checked and laid out (or reused from the build cache)."""

    render: ModelRender  # a summary unless the Repository keeps objects
    files: Mapping[str, bytes]  # under models/<name>/
    skipped: Mapping[str, int]  # kinds it had no schema for, and how often
    checks: tuple[Diagnostic, ...] = ()  # what the manifest check found
    # buildcache.model_text(render), where a worker made it (spooled, as its files are)
    text: spool.Span | bytes | None = None


@dataclass(frozen=True)
class RenderFailure:
    """A valid spec its runtime could not render."""

    name: str
    error: RenderError  # what a one-shot build raises
    diagnostic: Diagnostic  # the same, at the spec's name (what watch reports)


@dataclass(frozen=True)
class FileState:
    """One spec file as last read, and everything derived from those bytes."""

    digest: bytes
    names: tuple[SpecName, ...]  # of its valid specs, for the unique-name rule
    models: tuple[ModelOutput, ...]
    problems: tuple[Diagnostic, ...]  # reading and validation, warnings included
    failures: tuple[RenderFailure, ...] = ()
    volatile: bool = False  # a symlink: its target may change unseen, so re-read each batch
    entry: str | None = None  # its build-cache key, once stored or found there
    # wholebuild.contribution() of the above, when the worker that derived it said
    contribution: str | None = None

    @property
    def passed(self) -> bool:
        """Every spec valid, rendered and checked: what the build cache may keep."""
        checks = any(m.checks for m in self.models)
        return not (_errors(self.problems) or self.failures or checks)


# --- the repository --------------------------------------------------------------------------


class Repository:
    """Every spec file's state under one config, and what spans them all."""

    def __init__(
        self,
        root: Path,
        config: Config,
        *,
        crds: Sequence[Path] = (),
        config_problems: Sequence[Diagnostic] = (),
        keep_objects: bool = False,
    ) -> None:
        self.root, self.config = root, config
        self.config_problems = tuple(config_problems)
        self.keep_objects = keep_objects
        self.sources = crd_sources(root, config, crds)
        self.files: dict[str, FileState] = {}
        self._order: list[str] | None = None  # self.files' paths in discover() order
        validation = config.validation
        self._checker = _checker(
            validation.kubernetes_version, self.sources, validation.kubeconform
        )
        # Full objects are not cached (only summaries are): a build that keeps them (diff, for
        # the spec files that changed) renders afresh.
        self._key: str | None = None  # buildcache.build_key(), when the cache is used
        if buildcache.enabled() and not keep_objects:
            self._key = buildcache.build_key(config, buildcache.crd_inputs(self.sources), root)
        self._folder_problems: dict[str, Diagnostic] = {}  # folders that cannot be listed
        self._validation: tuple[Diagnostic, ...] | None = None  # validation_problems()
        self._listed: set[str] = set()  # what scan() just listed: known to be spec files
        self._flux: Objects | None = None  # the Flux objects last checked
        self._flux_checks: tuple[Diagnostic, ...] = ()
        self._flux_skipped: dict[str, int] = {}
        self._cluster: tuple[object, dict[str, bytes]] | None = None  # key, cluster_files()
        self._spool: spool.Spool | None = None  # where workers' output files are kept

    @property
    def key(self) -> str | None:
        return self._key

    @property
    def spec_root(self) -> Path:
        return self.root / self.config.specs

    @property
    def config_ok(self) -> bool:
        return not _errors(self.config_problems)

    # --- discovery ----------------------------------------------------------------------

    def scan(self, folder: str | None = None) -> set[str]:
        """Spec files under `folder` (default: the spec folder), as discover() lists them.

        Folders that cannot be listed are remembered as problems, until listed again.
        """
        folder = self.config.specs if folder is None else folder
        self._validation = None
        if self.spec_root_problem() is not None:
            return set()
        for known in [p for p in self._folder_problems if _within(folder, p)]:
            del self._folder_problems[known]
        base = self.root / folder

        def unreadable(exc: OSError) -> None:
            where = Path(exc.filename) if exc.filename else base
            rel = _relative(self.root, where) if where.is_relative_to(self.root) else folder
            if exc.errno == errno.ENOENT and where == base:
                return  # a missing spec folder is a warning (see validation_problems)
            problem = file_error(rel, folder_problem(exc))
            self._folder_problems[rel] = problem

        listed = set(spec_files(self.root, folder, unreadable))
        self._listed |= listed
        return listed

    def spec_root_problem(self) -> Diagnostic | None:
        # A linked spec folder must stay inside the repository.
        base = self.spec_root
        if not base.is_symlink():
            return None
        if problem := link_text_problem(self.root, base):
            return file_error(self.config.specs, f"spec folder: {problem}")
        if not base.resolve().is_relative_to(self.root.resolve()):
            return file_error(self.config.specs, "spec folder is a symlink outside the repository")
        return None

    def is_spec(self, rel: str) -> bool:
        """Whether `discover()` would list `rel` now (it does not follow linked folders)."""
        if not listed_spec_files([rel], self.config.specs):  # its name, hidden folders
            return False
        parts = PurePosixPath(rel).relative_to(self.config.specs).parts
        folder = self.spec_root
        for part in parts[:-1]:
            folder = folder / part
            if folder.is_symlink() or not folder.is_dir() or os.path.lexists(folder / ".git"):
                return False  # a nested repository is not walked (load.NestedRepository)
        path = folder / parts[-1]
        return (path.is_symlink() or path.exists()) and not path.is_dir()

    # --- per file -----------------------------------------------------------------------

    def update(self, rels: Iterable[str], jobs: int = 1) -> list[str]:
        """Re-read these paths as they are now; the ones whose contribution changed.

        With `jobs` > 1, the files not known yet may be derived by that many worker
        processes (generator/workers.py); what they cannot vouch for is derived here.
        """
        self._validation = None  # the spec folder itself may have changed too
        usable = self.spec_root_problem() is None and self.spec_root.is_dir()
        ordered = sorted(rels, key=_walk_order)
        new = [rel for rel in ordered if rel not in self.files] if usable else []
        elsewhere: Generator[FileState | None] | None = None
        first, pending, warmed = set[str](), set[str](), set[str]()
        if not self.keep_objects and workers.usable(len(new), jobs):
            # The first few here, without a progress step (no bar's thread before the
            # fork): what the workers then inherit is loaded once.
            first = set(new[: workers.WARM_UP])
            warmed = {rel for rel in new[: workers.WARM_UP] if self._refresh(rel, usable)}
            pending = set(new[workers.WARM_UP :])
            elsewhere = self._derived_elsewhere(new[workers.WARM_UP :], jobs)
        changed = []
        try:
            for done, rel in enumerate(ordered, 1):
                state = next(elsewhere) if elsewhere is not None and rel in pending else None
                if rel in first:
                    if rel in warmed:
                        changed.append(rel)
                elif state is not None:
                    self._keep(rel, state)
                    changed.append(rel)
                elif self._refresh(rel, usable):
                    changed.append(rel)
                progress.step(done, len(ordered))
        finally:
            if elsewhere is not None:  # the workers are done (or stopped, on an error)
                elsewhere.close()
        self._listed = set()  # what a later batch names is checked again
        return changed

    def _derived_elsewhere(self, rels: Sequence[str], jobs: int) -> Generator[FileState | None]:
        """The state of each of `rels`, in order, as worker processes derived it; None
        for a file the caller derives itself (it did not pass, or is a symlink). The
        workers start now."""
        return self._states(workers.spread(self._derive_batch, rels, jobs))

    def _states(self, results: Iterator[Derived | None]) -> Generator[FileState | None]:
        # Made once the workers are forked (they never see it); None where no temporary
        # file can be made, and then the files' bytes stay in memory.
        self._spool = spool.spool()
        with contextlib.closing(results):  # type: ignore[type-var]  # a generator
            yield from self._decoded(results)

    def _decoded(self, results: Iterator[Derived | None]) -> Iterator[FileState | None]:
        for found in results:
            if found is None:
                yield None
                continue
            digest, entry, head, blobs, contribution = found
            cached = buildcache.decode(entry, head, blobs)
            if cached is None:
                yield None
                continue
            models = tuple(
                ModelOutput(c.model, self._spooled(c.files), c.skipped, text=self._kept(c.text))
                for c in cached.models
            )
            yield FileState(
                digest,
                cached.names,
                models,
                cached.warnings,
                entry=entry or None,
                contribution=contribution,
            )

    def _spooled(self, files: Mapping[str, bytes]) -> Mapping[str, bytes]:
        """A worker's files for one model, their bytes moved to the spool (generator/
        spool.py) when there is one."""
        return files if self._spool is None else self._spool.put(files)

    def _kept(self, text: bytes | None) -> spool.Span | bytes | None:
        """A worker's text of one model (for the whole build's entry), in the spool
        when there is one."""
        return text if self._spool is None or text is None else self._spool.append(text)

    def _derive_batch(self, rels: Sequence[str]) -> list[Derived | None]:
        """In a worker process: what each file yields (stored in the build cache, or
        found there); None for a file that did not pass or could not be judged here."""
        out: list[Derived | None] = []
        for rel in rels:
            try:
                out.append(self._derive_entry(rel))
            except Exception:  # derived again by the parent, which reports it
                out.append(None)
        return out

    def _derive_entry(self, rel: str) -> Derived | None:
        if rel not in self._listed and not self.is_spec(rel):
            return None
        data, source, volatile = read_spec(self.root, self.root / rel)
        if source is not None or volatile:
            return None  # a symlink or an unreadable file: for the parent to judge
        digest = wholebuild.spec_digest(data)
        entry = buildcache.file_key(self._key, rel, data) if self._key is not None else ""
        found = buildcache.read_raw(entry) if entry else None
        cached = buildcache.decode(entry, found) if found is not None else None
        stored = cached is not None  # by an earlier build, and for this very key
        if cached is None:
            state = self._derive(digest, parse_source(rel, data), False, None)
            if not state.passed:
                return None
            cached = _cached(state)
        # Each model's text is made once: the entry, the message to the parent, the
        # contribution and (in the parent) the whole build's entry all hold it.
        cached = buildcache.with_texts(cached)
        if entry and not stored:
            buildcache.store(entry, cached)
        blobs: list[bytes] = []
        head = buildcache.encode(entry, cached, blobs)
        if head is None:
            return None
        models = ((c.model, c.files, c.skipped, _text_digest(c.text)) for c in cached.models)
        contribution = wholebuild.contribution(cached.names, cached.warnings, models)
        return (digest, entry, head, blobs, contribution)

    def _refresh(self, rel: str, usable: bool) -> bool:
        old = self.files.get(rel)
        if not (usable and (rel in self._listed or self.is_spec(rel))):
            if self.files.pop(rel, None) is None:
                return False
            self._order = None
            return True
        data, source, volatile = read_spec(self.root, self.root / rel)
        digest = wholebuild.spec_digest(data)
        if old is not None and old.digest == digest:
            return False
        # What a symlink points at is for the loader to judge, every time: never cached.
        entry = None
        if self._key is not None and not volatile:
            entry = buildcache.file_key(self._key, rel, data)
        state = self._reused(digest, entry)
        if state is None:
            parsed = parse_source(rel, data) if source is None else source
            state = self._derive(digest, parsed, volatile, entry)
        self._keep(rel, state)
        return True

    def _keep(self, rel: str, state: FileState) -> None:
        if rel not in self.files:
            self._order = None  # a new path: sorted again when next asked
        self.files[rel] = state

    def _reused(self, digest: bytes, entry: str | None) -> FileState | None:
        cached = buildcache.load(entry) if entry is not None else None
        if cached is None:
            return None
        models = tuple(ModelOutput(c.model, c.files, c.skipped) for c in cached.models)
        return FileState(digest, cached.names, models, cached.warnings, entry=entry)

    def _derive(
        self, digest: bytes, source: SourceFile | Diagnostic, volatile: bool, entry: str | None
    ) -> FileState:
        """Validate, then render, check and lay out each spec; stored when all passed."""
        if isinstance(source, Diagnostic):
            return FileState(digest, (), (), (source,), volatile=volatile)
        result = validate_file(source, self.config)
        names = tuple(SpecName.of(spec) for spec in result.specs)
        if result.failed:  # rendered only once every spec of the file is valid
            return FileState(digest, names, (), result.diagnostics, volatile=volatile)
        models, failures = [], []
        for spec in result.specs:
            try:
                models.append(self._model(spec))
            except RenderError as exc:
                line, col = spec.document.position(("name",))
                message = exc.message.removeprefix(f"{spec.path}: ")
                where = Diagnostic(spec.path, line, col, "", message)
                failures.append(RenderFailure(spec.name, exc, where))
        state = FileState(
            digest, names, tuple(models), result.diagnostics, tuple(failures), volatile
        )
        if entry is None or not state.passed:
            return state  # one that failed is derived (and reported) again each time
        buildcache.store(entry, _cached(state))
        return replace(state, entry=entry)

    def _model(self, spec: ValidatedSpec) -> ModelOutput:
        """One spec rendered, checked and laid out."""
        model = render_spec(spec, self.config)
        checks, skipped = self._check_model(model)
        files = model_files(model)
        kept = model if self.keep_objects else summary(model)
        return ModelOutput(kept, files, skipped, checks)

    def _check_model(self, model: ModelRender) -> tuple[tuple[Diagnostic, ...], dict[str, int]]:
        found: list[Diagnostic] = []
        skipped: dict[str, int] = {}
        for env, rendered in model.environments.items():
            result = self._checker.check(rendered.objects)
            _count(skipped, result.skipped_kinds)
            for problem in result.problems:
                message = (
                    f"rendered {problem.kind}/{problem.name} (environment {env}) is invalid: "
                    f"{problem.path}: {problem.message}"
                )
                found.append(Diagnostic(model.path, model.line, model.col, "", message))
        return tuple(found), skipped

    # --- the whole repository -----------------------------------------------------------

    def paths(self) -> list[str]:
        """The spec files it holds, in discover() order."""
        return list(self._in_walk_order())

    def ordered(self) -> list[FileState]:
        # discover() order, so cross-file diagnostics read exactly as a one-shot run's.
        return [self.files[rel] for rel in self._in_walk_order()]

    def _in_walk_order(self) -> list[str]:
        """The paths of self.files in discover() order, sorted again only after a path
        came or went: a build asks several times, and at 10,000 files a sort by
        _walk_order() takes 15 ms."""
        if self._order is None:
            self._order = sorted(self.files, key=_walk_order)
        return self._order

    def models(self) -> list[ModelOutput]:
        models = (m for state in self.ordered() for m in state.models)
        return sorted(models, key=lambda m: m.render.name)  # render order: by name

    def renders(self) -> list[ModelRender]:
        return [m.render for m in self.models()]

    def validation_problems(self) -> tuple[Diagnostic, ...]:
        """The config, reading and validating every file, unique names: step 2's verdict."""
        if self._validation is None:
            self._validation = self._validate_all()
        return self._validation

    def _validate_all(self) -> tuple[Diagnostic, ...]:
        found = list(self.config_problems)
        if not self.config_ok:
            # What a config error leaves is the defaults: every spec would be judged by
            # environments and profiles the repository does not have, and each would get
            # errors that are not its own. The config's errors come alone, first.
            return tuple(sorted(set(found)))
        missing = missing_spec_folder(self.root, self.config)
        if missing is not None:
            found.append(missing)
        root_problem = self.spec_root_problem()
        if root_problem is not None:
            return tuple(sorted({*found, root_problem}))
        found += self._folder_problems.values()
        states = self.ordered()
        found += (d for state in states for d in state.problems)
        found += duplicate_names([name for state in states for name in state.names])
        return tuple(sorted(set(found)))

    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.validation_problems() if d.severity == "warning")

    def render_failures(self) -> list[RenderFailure]:
        """Specs that did not render, in the order a one-shot build renders them."""
        failures = (f for state in self.ordered() for f in state.failures)
        return sorted(failures, key=lambda f: f.name)

    def problems(self) -> tuple[Diagnostic, ...]:
        """Why a build fails now (no errors: it passes), with validation's warnings.

        Each step reports only when the ones before it passed: validation, rendering,
        objects two specs (or two environments on one cluster) both write, then the
        manifest checks of every model and of the Flux objects.
        """
        validation = self.validation_problems()
        if _errors(validation):
            return validation
        found = [*validation, *(f.diagnostic for f in self.render_failures())]
        if not _errors(found):
            renders = self.renders()
            found += duplicate_objects(renders, self.config)
            if not _errors(found):
                found += (d for state in self.ordered() for m in state.models for d in m.checks)
                found += self._check_flux(renders)
        return tuple(sorted(set(found)))

    def raise_problems(self) -> None:
        """Raise what `problems()` finds, as a one-shot build reports it: the first spec
        (by name) that did not render as its RenderError, anything else as invalid input."""
        failures = self.render_failures()
        if failures and not _errors(self.validation_problems()):
            raise failures[0].error
        problems = self.problems()
        if _errors(problems):
            raise InvalidInputError(problems)

    def _check_flux(self, renders: Sequence[ModelRender]) -> tuple[Diagnostic, ...]:
        """The Flux objects list every model in their health checks: checked when they change."""
        flux = [flux_objects(renders, self.config, env) for env in self.config.environments]
        if flux == self._flux:
            return self._flux_checks
        checks: list[Diagnostic] = []
        skipped: dict[str, int] = {}
        for objects in flux:
            result = self._checker.check(objects)
            _count(skipped, result.skipped_kinds)
            for problem in result.problems:
                message = (
                    f"rendered Flux {problem.kind}/{problem.name} is invalid: "
                    f"{problem.path}: {problem.message}"
                )
                checks.append(Diagnostic(CONFIG_FILE, 1, 1, "flux", message))
        self._flux, self._flux_checks, self._flux_skipped = flux, tuple(checks), skipped
        return self._flux_checks

    def notes(self) -> tuple[str, ...]:
        """The warnings, then each kind no schema checked (after a passing `problems()`)."""
        skipped = dict(self._flux_skipped)
        for model in self.models():
            for kind, count in model.skipped.items():
                skipped[kind] = skipped.get(kind, 0) + count
        unchecked = (
            f"no CRD bundled or configured for {kind}: {count} object(s) not schema-checked "
            "(add it to validation.crds in servegen.yaml or pass --crds)"
            for kind, count in sorted(skipped.items())
        )
        return (*(f"{d.path}: {d.message}" for d in self.warnings()), *unchecked)

    def output(self) -> Mapping[str, bytes]:
        """The whole output tree (after a passing `problems()`): relative path -> bytes;
        files whose bytes are in the spool stay there (a spool.SpooledFiles)."""
        models = self.models()
        renders = [m.render for m in models]
        files: dict[str, bytes] = {}
        spooled: dict[str, spool.Span | bytes] = {}
        for model in models:
            if isinstance(model.files, spool.SpooledFiles):
                spooled.update(model.files.spans())
            else:
                files.update(model.files)
        laid = finish_layout(files, renders, self.config, self._cluster_files(renders))
        return spool.merged(spooled, laid) if spooled else laid

    def _cluster_files(self, renders: Sequence[ModelRender]) -> Mapping[str, bytes]:
        """cluster_files(), again only when what it reads of the models changed.

        It dumps the Flux objects, whose health checks list every model, and the endpoint
        catalog: ~120 ms for 1,000 models, while most edits change neither. What it reads
        of the models is their names, environments and endpoints, and (through
        flux_objects) the Flux objects: that is the key, in memory and in the build cache.
        """
        # Each endpoint as its fields' dict (a frozen dataclass keeps them there), plain
        # data the build-cache key writes with marshal rather than as JSON.
        inputs = (
            [
                (m.name, [(env, vars(r.endpoint)) for env, r in m.environments.items()])
                for m in renders
            ],
            self._flux,
        )
        if self._cluster is not None and self._cluster[0] == inputs:
            return self._cluster[1]
        entry = None
        if self._key is not None:
            entry = buildcache.derived_key(self._key, "cluster files", inputs)
        files = buildcache.load_files(entry) if entry is not None else None
        if files is None:
            files = cluster_files(renders, self.config, self._flux)  # problems() made them
            if entry is not None:
                buildcache.store_files(entry, files)
        self._cluster = (inputs, files)
        return files

    def result(self) -> Build:
        """The Build (after a passing `problems()`)."""
        renders = tuple(self.renders())
        inputs = None
        if self._key is not None:
            inputs = (self._key, {rel: state.digest for rel, state in self.files.items()})
        return Build(
            self.root,
            self.config,
            renders,
            self.output(),
            self.notes(),
            frozenset(),
            self.warnings(),
            inputs=inputs,
        )

    def store(self, built: Build) -> str | None:
        """Remember a whole passing build under the key of the very bytes it was built
        from (what _reused_build() computes before reading anything else): a file that
        changed between that look and the build cannot store this build under its old
        bytes. Returns the tree digest of its files (None when it is not stored)."""
        if self._key is None or self.spec_root.is_symlink():
            return None
        ordered = self._in_walk_order()  # discover() order, as the key reads
        if any(self.files[rel].volatile for rel in ordered):
            return None  # a symlink: _reused_build() never finds such a build either
        digests = ((rel, self.files[rel].digest) for rel in ordered)
        key = wholebuild.repository_key_of(self._key, digests)
        sources = [
            wholebuild.Source(rel, self.files[rel].digest, _contribution(self.files[rel]))
            for rel in ordered
        ]
        tree = wholebuild.store_build(  # without keep_objects, models are summaries already
            key,
            built.models,
            built.files,
            built.notes,
            built.failed_files,
            built.warnings,
            sources,
            [m.text for m in self.models()],  # in the order of built.models
        )
        wholebuild.store_latest(self._key, key)
        return tree

    def delta(
        self, latest: wholebuild.Latest, digests: Mapping[str, bytes], environment: str | None
    ) -> Build | None:
        """The latest stored build of this repository with only the changed spec files
        rendered again, when what they contribute beyond their own model files is what
        it was (see wholebuild.contribution()): then every check that spans models, the
        notes and every file outside those models' folders are the latest build's too.
        None otherwise (what was rendered is kept for the full build that follows).

        `digests` are the spec files' digests the whole-build key was computed from.
        """
        listed = digests.keys()  # every spec folder could be listed (see _reused_build)
        if self._key is None or listed != latest.sources.keys() or not self.spec_root.is_dir():
            return None
        changed = [rel for rel in listed if digests[rel] != latest.sources[rel][0]]
        self.update(changed)
        states = {rel: self.files.get(rel) for rel in changed}
        for rel, state in states.items():
            if state is None or state.volatile or not state.passed:
                return None
            if _contribution(state) != latest.sources[rel][1]:
                return None
        _check_environment(self.config, environment)
        now = {**digests, **{rel: state.digest for rel, state in states.items() if state}}
        ordered = sorted(listed, key=_walk_order)
        key = wholebuild.repository_key_of(self._key, ((rel, now[rel]) for rel in ordered))
        files: dict[str, dict[str, bytes]] = {}
        for rel, state in states.items():
            files[rel] = {p: d for m in (state.models if state else ()) for p, d in m.files.items()}
        found = latest.delta(key, {rel: now[rel] for rel in ordered}, files)
        if found is None:
            return None
        stored, tree = found
        wholebuild.store_latest(self._key, key)
        base = latest.build
        built = Build(self.root, self.config, base.models, stored, base.notes, base.failed_files)
        counts = (base.objects, base.spec_files)
        inputs = (self._key, now)  # every listed spec file's digest, as the key reads them
        return replace(built, warnings=base.warnings, tree=tree, counts=counts, inputs=inputs)

    def seed(self, latest: wholebuild.Latest, digests: Mapping[str, bytes]) -> list[str] | None:
        """Take each spec file whose bytes are what the latest stored build was made
        from out of that build, unread: its models' summaries, texts and files, its
        specs' names and its warnings, kept only if they give the very contribution
        that build recorded for the file. Returns the spec files left to read (the
        others, in `digests`' order); None when the latest build cannot be read back.

        A spec file added, removed or changing what other files read (a name, an
        endpoint) then costs what it renders, the checks that span every model and the
        cluster files, instead of reading every spec file's entry again.
        """
        sources = latest.sources
        kept = [r for r, d in digests.items() if r not in self.files and r in sources]
        kept = [rel for rel in kept if sources[rel][0] == digests[rel]]
        seeds = latest.seeds() if kept and self._key is not None else None
        if seeds is None:
            return None
        warnings: dict[str, list[Diagnostic]] = {}
        for warning in latest.build.warnings:
            warnings.setdefault(warning.path, []).append(warning)
        try:
            for rel in kept:
                self._seed(rel, seeds.get(rel, []), warnings.get(rel, []), sources[rel])
        except buildcache.DamagedEntryError:
            return None
        return [rel for rel in digests if rel not in self.files]

    def _seed(
        self,
        rel: str,
        seeds: Sequence[wholebuild.Seed],
        warnings: Sequence[Diagnostic],
        source: tuple[bytes, str],
    ) -> None:
        """Keep one spec file as the latest build read back gives it, if that is exactly
        what it yielded then (its recorded contribution)."""
        models = tuple(ModelOutput(s.model, s.files, {}, text=s.text) for s in seeds)
        names = tuple(SpecName(m.name, m.path, m.line, m.col) for m in (s.model for s in seeds))
        # Kinds left unchecked are in no summary: a file that had any is read again.
        unchecked: dict[str, int] = {}
        # Each text's digest is the entry's: its text is not read again.
        pieces = ((s.model, s.files, unchecked, s.text.digest) for s in seeds)
        digest, contribution = source
        if wholebuild.contribution(names, warnings, pieces) == contribution:
            state = FileState(digest, names, models, tuple(warnings), contribution=contribution)
            self._keep(rel, state)


def _cached(state: FileState) -> buildcache.CachedFile:
    """What the build cache keeps of a file that passed (its models are summaries: a
    Repository that keeps objects has no cache)."""
    models = (buildcache.Cached(m.render, m.files, m.skipped) for m in state.models)
    return buildcache.CachedFile(state.names, state.problems, tuple(models))


def _contribution(state: FileState) -> str:
    if state.contribution is not None:
        return state.contribution
    models = ((m.render, m.files, m.skipped, _text_digest(m.text)) for m in state.models)
    return wholebuild.contribution(state.names, state.problems, models)


def _text_digest(text: spool.Span | bytes | None) -> bytes | None:
    """The digest of a model's text (buildcache.model_text()) where the text is known:
    a span in a spool records it, so its text is not read."""
    if text is None:
        return None
    return text.digest if isinstance(text, spool.Span) else outindex.digest(text)


# --- one-shot builds -------------------------------------------------------------------------


def build(
    root: Path,
    *,
    environment: str | None = None,
    crds: Sequence[Path] = (),
    keep_objects: bool = False,
) -> Build:
    """Validate, render, check and lay out the repository at `root`; raise on any error.

    A Repository filled from scratch. Each spec streams through render -> check ->
    layout; unless `keep_objects`, only a summary of its objects (identities, what Flux
    health checks need) is kept after that, so memory holds output bytes rather than
    every rendered object at once. With nothing changed since a passing build, that
    build is taken whole from the build cache, without reading a spec.
    """
    digests: dict[str, bytes] | None = None
    if not keep_objects and buildcache.enabled():
        reused, digests = _reused_build(root, crds)  # before anything else is read
        if reused is not None:
            return _filtered(reused, environment)
    built = _fresh_build(root, crds, keep_objects, environment, digests)
    return _filtered(built, environment)


def rendered_files(
    root: Path, rels: Iterable[str], crds: Sequence[Path] = ()
) -> dict[str, FileState] | None:
    """The spec files `rels` of `root` as they are now, their models rendered afresh
    with every object, no other spec file read: for a caller holding the repository's
    build (summaries, from the build cache) that needs the objects of a few models.
    None when one of these files does not pass now."""
    config, problems = load_config(root)
    if _errors(problems):
        return None
    repository = Repository(root, config, crds=crds, keep_objects=True)
    wanted = sorted(set(rels), key=_walk_order)
    repository.update(wanted)
    found = {rel: repository.files.get(rel) for rel in wanted}
    if any(state is None or not state.passed for state in found.values()):
        return None
    return {rel: state for rel, state in found.items() if state is not None}


def stored_build(root: Path, crds: Sequence[Path] = ()) -> Build | None:
    """What build() of `root` would return whole from the build cache (its models as
    summaries: each object's identity and what Flux health checks need), without
    reading or rendering a spec; None when the cache holds no build of these inputs."""
    if not buildcache.enabled():
        return None
    return _reused_build(root, crds)[0]


def _fresh_build(
    root: Path,
    crds: Sequence[Path],
    keep_objects: bool,
    environment: str | None = None,
    digests: Mapping[str, bytes] | None = None,
) -> Build:
    """build() without the whole-build entry of these very bytes: from the latest build
    of the repository when only a few spec files changed (Repository.delta()), else
    from each spec file's entry or from scratch."""
    with young_collections_only():
        config, config_problems = load_config(root)
        repository = Repository(
            root, config, crds=crds, config_problems=config_problems, keep_objects=keep_objects
        )
        # What is loaded lives until the end: keep the cyclic collector from walking it
        # again and again while rendering allocates (a tenth of a large render). Unfrozen
        # after, so long-lived callers (tests, diff) still collect it.
        gc.freeze()
        try:
            latest = _latest(repository, crds) if digests is not None else None
            left = None
            if latest is not None and digests is not None:
                delta = repository.delta(latest, digests, environment)
                if delta is not None:
                    return delta
                left = repository.seed(latest, digests)
            repository.update(repository.scan() if left is None else left, workers.jobs())
            if not _errors(repository.validation_problems()):
                _check_environment(config, environment)
            repository.raise_problems()
            built = repository.result()
            # Stored before the objects are unfrozen and the usual thresholds are back:
            # after, the allocations of storing a large build set off a full
            # collection of everything it loaded (350 ms at 10,000 specs).
            tree = repository.store(built)
        finally:
            gc.unfreeze()
    # The tree's digest lets the write find an output that already holds it by a stat
    # per file, or write only the files that differ from what it holds.
    return built if tree is None else replace(built, tree=tree)


def seeded(repository: Repository, rels: Iterable[str], crds: Sequence[Path]) -> list[str]:
    """Of the spec files `rels` (all the repository has, for a Repository yet empty),
    those left to read once every file whose bytes the latest whole build of the
    repository was made from is taken from that build unread (Repository.seed()): its
    models' files stay in the build's entry, read when asked for. All of `rels` when
    there is no such build, or a file cannot be digested (the read reports it)."""
    ordered = sorted(rels, key=_walk_order)
    if repository.keep_objects or not buildcache.enabled():
        return ordered
    latest = _latest(repository, crds)
    digests = None if latest is None else wholebuild.spec_digests(repository.root, ordered)
    left = None if latest is None or digests is None else repository.seed(latest, dict(digests))
    return ordered if left is None else left


def _latest(repository: Repository, crds: Sequence[Path]) -> wholebuild.Latest | None:
    key = repository.key
    if key is None or not repository.config_ok:
        return None
    return wholebuild.load_latest(key, _rebuild(repository.root, crds))


def _rebuild(root: Path, crds: Sequence[Path]) -> wholebuild.Rebuild:
    """What a stored build found damaged once read falls back to: a build without it
    (the entry is deleted by then)."""

    def rebuild() -> tuple[Sequence[ModelRender], Mapping[str, bytes]]:
        built = _fresh_build(root, crds, keep_objects=False)
        return built.models, built.files

    return rebuild


@contextmanager
def young_collections_only() -> Iterator[None]:
    """No full garbage collections while a build is made, stored or written; young
    objects are still collected.

    A full collection walks every object alive, and a build keeps what it loads to the
    end: at 10,000 specs the default thresholds made 13 of them (CPython 3.11), with
    no memory to show for it (peak RSS the same without them). Turning the collector
    off altogether is not the same: a cold render's peak RSS went from 193 to 232 MB.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], 1_000_000))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _check_environment(config: Config, environment: str | None) -> None:
    if environment is not None:
        config.require_environment(environment)


def _filtered(built: Build, environment: str | None) -> Build:
    """`built` with only the files `kubectl kustomize` needs for one environment."""
    _check_environment(built.config, environment)
    if environment is None:
        return built
    files = {path: data for path, data in built.files.items() if in_environment(path, environment)}
    return replace(built, files=files, tree=None)


def _reused_build(root: Path, crds: Sequence[Path]) -> tuple[Build | None, dict[str, bytes] | None]:
    """The build of `root` stored under its key (everything any model depends on, and
    every spec file's path and bytes); None when anything it depends on changed. And
    the spec files' digests that key was computed from (None if it has none).

    Only a build without problems is ever stored, so a config with problems (which a
    fresh validation reports) has no key.
    """
    config, problems = load_config(root)
    if problems or (root / config.specs).is_symlink():
        return None, None
    sources = crd_sources(root, config, crds)
    build_key = buildcache.build_key(config, buildcache.crd_inputs(sources), root)
    unlisted: list[OSError] = []  # a folder that cannot be listed: for validation to report

    def unreadable(exc: OSError) -> None:
        if exc.errno != errno.ENOENT or Path(exc.filename or "") != root / config.specs:
            unlisted.append(exc)  # (no spec folder at all is a warning, and is stored)

    digests = wholebuild.spec_digests(root, spec_files(root, config.specs, unreadable))
    if digests is None or unlisted:
        return None, None
    reused = _stored(root, config, build_key, digests, _rebuild(root, crds))
    return reused, None if reused is not None else dict(digests)


def stored_build_from(
    root: Path,
    specs: Mapping[str, bytes],
    crds: Sequence[Path],
    rebuild: Callable[[], Build],
) -> Build | None:
    """The build stored for `root`'s config and CRDs and the spec files `specs` (path
    -> bytes: every spec file, as spec_files() would list them once written out), when
    the build cache holds it whole; whatever spec files `root` itself holds. For a
    commit read from git: only the files a caller renders again need be written out.
    `rebuild()` gives the whole build should the entry turn out damaged when read.

    None also where _reused_build() would find no key: a config with problems or
    naming CRD files of the repository (they are inputs too), a file over the size
    limit (the loader words that).
    """
    config, problems = load_config(root)
    if problems or config.validation.crds or any(len(b) > MAX_FILE_BYTES for b in specs.values()):
        return None
    build_key = buildcache.build_key(
        config, buildcache.crd_inputs(crd_sources(root, config, crds)), root
    )
    ordered = sorted(specs, key=_walk_order)
    digests = [(rel, wholebuild.spec_digest(specs[rel])) for rel in ordered]

    def rebuilt() -> tuple[Sequence[ModelRender], Mapping[str, bytes]]:
        built = rebuild()
        return built.models, built.files

    return _stored(root, config, build_key, digests, rebuilt)


def _stored(
    root: Path,
    config: Config,
    build_key: str,
    digests: Sequence[tuple[str, bytes]],
    rebuild: wholebuild.Rebuild,
) -> Build | None:
    """The build stored under `build_key` and the spec files' `digests` (walk order)."""
    reused = wholebuild.load_build(wholebuild.repository_key_of(build_key, digests), rebuild)
    if reused is None:
        return None
    built = Build(root, config, reused.models, reused.files, reused.notes, reused.failed_files)
    counts = (reused.objects, reused.spec_files)
    inputs = (build_key, dict(digests))
    built = replace(built, warnings=reused.warnings, tree=reused.tree, counts=counts)
    return replace(built, inputs=inputs)


# --- reading one spec file -------------------------------------------------------------------


def read_spec(root: Path, path: Path) -> tuple[bytes, SourceFile | Diagnostic | None, bool]:
    """(bytes, verdict, volatile), as `read_source` would judge the file.

    A regular file within the size limit is read whole and not parsed yet (verdict None:
    `parse_source` of the bytes, unless the build cache knows them). The bytes are the
    very ones to parse (their digest says whether a file changed), so a file that changes
    while it is read is read again by the next batch. Symlinks, oversized and unreadable
    files are left to `read_source` for its checks and messages; for those the bytes
    stand for the verdict.
    """
    linked = path.is_symlink()
    try:
        info = path.stat()
        # Only regular files are read here: a FIFO would block forever (read_source says so).
        if not linked and stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES:
            return path.read_bytes(), None, False
    except OSError:
        pass  # read_source words the error
    judged = read_source(root, path)
    if isinstance(judged, Diagnostic):
        return str(judged).encode(), judged, linked
    try:
        return path.read_bytes(), judged, linked  # a link read_source found safe
    except OSError as exc:  # replaced since: the next batch reads it again
        return str(exc).encode(), judged, linked


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _count(counts: dict[str, int], kinds: Iterable[str]) -> None:
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1


def _errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def _within(parent: str, rel: str) -> bool:
    """Whether `rel` is `parent` or inside it ("" is the repository root)."""
    return parent in ("", ".") or rel == parent or rel.startswith(parent.rstrip("/") + "/")


def _walk_order(rel: str) -> str:
    """Sort key matching os.walk(topdown) with sorted names: a folder's files first.

    One string, not a tuple per name (three times faster to sort): a folder's name
    between the characters 2 and NUL, the file's name after the character 1. At any
    depth a file then sorts before a folder, and a folder's name before every longer
    name it begins (no name holds a NUL).
    """
    *folders, name = rel.split("/")
    return "".join(f"\x02{folder}\x00" for folder in folders) + "\x01" + name
