"""The whole pipeline, load -> validate -> render -> check -> lay out, as one call.

Commands (render, validate, diff, publish, watch) are thin loops over `build()`; it never
writes anything, so a failure at any step leaves every output untouched.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator import buildcache, progress
from generator.config import CONFIG_FILE, Config
from generator.errors import Diagnostic, InvalidInputError, RenderError
from generator.flux import flux_objects
from generator.layout import finish_layout, model_files
from generator.load import discover
from generator.outtree import in_environment
from generator.render import ModelRender, duplicate_objects, render_spec, summary
from generator.validate import Spec, Validated, load_config, validate_repository

if TYPE_CHECKING:
    from generator.check import ManifestValidator, ObjectProblem


@dataclass(frozen=True)
class Build:
    """A rendered and checked repository, ready to write or commit."""

    root: Path
    config: Config
    models: tuple[ModelRender, ...]
    files: dict[str, bytes]
    notes: tuple[str, ...]
    failed_files: frozenset[str]

    def object_count(self) -> int:
        return sum(len(env.objects) for m in self.models for env in m.environments.values())


def crd_sources(root: Path, config: Config, extra: Sequence[Path] = ()) -> tuple[Path, ...]:
    configured = [Path(p) if Path(p).is_absolute() else root / p for p in config.validation.crds]
    return tuple(configured) + tuple(Path(p) for p in extra)


@cache
def _validator(version: str, sources: tuple[Path, ...], kubeconform: str) -> ManifestValidator:
    # Imported on first use: schema loading is the slowest part of start-up.
    from generator.check import ManifestValidator
    from generator.crds import bundled_files

    return ManifestValidator(
        version, sources, kubeconform=kubeconform, bundled_crds=bundled_files()
    )


class _Checker:
    """Validates rendered objects model by model, counting kinds it had no schema for."""

    def __init__(self, config: Config, sources: tuple[Path, ...]) -> None:
        validation = config.validation
        self.validator = _validator(validation.kubernetes_version, sources, validation.kubeconform)
        self.diagnostics: list[Diagnostic] = []
        self.skipped: dict[str, int] = {}

    def model(self, model: ModelRender) -> tuple[bool, dict[str, int]]:
        """Check one model: (whether it passed, the kinds it had no schema for)."""
        found = len(self.diagnostics)
        before = dict(self.skipped)
        for env, rendered in model.environments.items():
            for problem in self._problems(rendered.objects):
                message = (
                    f"rendered {problem.kind}/{problem.name} (environment {env}) is invalid: "
                    f"{problem.path}: {problem.message}"
                )
                self.diagnostics.append(Diagnostic(model.path, model.line, model.col, "", message))
        skipped = {k: n - before.get(k, 0) for k, n in self.skipped.items() if n != before.get(k)}
        return len(self.diagnostics) == found, skipped

    def reuse(self, skipped: Mapping[str, int]) -> None:
        """Count a cached model's unchecked kinds, as checking it again would."""
        for kind, count in skipped.items():
            self.skipped[kind] = self.skipped.get(kind, 0) + count

    def flux(self, models: Sequence[ModelRender], config: Config) -> None:
        for env in config.environments:
            for problem in self._problems(flux_objects(models, config, env)):
                message = (
                    f"rendered Flux {problem.kind}/{problem.name} is invalid: "
                    f"{problem.path}: {problem.message}"
                )
                self.diagnostics.append(Diagnostic(CONFIG_FILE, 1, 1, "flux", message))

    def _problems(self, objects: Sequence[Mapping[str, Any]]) -> Sequence[ObjectProblem]:
        result = self.validator.validate(objects)
        for kind in result.skipped_kinds:
            self.skipped[kind] = self.skipped.get(kind, 0) + 1
        return result.problems

    def notes(self) -> list[str]:
        return [
            f"no CRD bundled or configured for {kind}: {count} object(s) not schema-checked "
            "(add it to validation.crds in servegen.yaml or pass --crds)"
            for kind, count in sorted(self.skipped.items())
        ]


def check_models(
    models: Sequence[ModelRender], config: Config, sources: tuple[Path, ...]
) -> tuple[list[Diagnostic], list[str]]:
    """Validate every final object (and the Flux objects) against their schemas."""
    checker = _Checker(config, sources)
    for model in models:
        checker.model(model)
    checker.flux(models, config)
    return checker.diagnostics, checker.notes()


def build(
    root: Path,
    *,
    environment: str | None = None,
    crds: Sequence[Path] = (),
    validated: Validated | None = None,
    keep_objects: bool = False,
    cache_key: str | None = None,
) -> Build:
    """Validate, render, check and lay out the repository at `root`; raise on any error.

    Each spec streams through render -> check -> layout; unless `keep_objects`, only a
    summary of its objects (identities, what Flux health checks need) is kept after
    that, so memory holds output bytes rather than every rendered object at once.

    Results are reused from and stored in the build cache (generator/buildcache.py). A
    caller passing `validated` may pass `cache_key`, the repository_key() it computed
    before validating, so that the whole build is stored under the bytes it came from.
    """
    repository = cache_key if not keep_objects and buildcache.enabled() else None
    if validated is None and not keep_objects and buildcache.enabled():
        repository = repository_key(root, crds)
        reused = reused_build(root, repository)
        if reused is not None:
            return _filtered(reused[0], environment)
    with _young_collections_only():
        return _build(root, environment, crds, validated, keep_objects, repository)


def _build(
    root: Path,
    environment: str | None,
    crds: Sequence[Path],
    validated: Validated | None,
    keep_objects: bool,
    repository: str | None,
) -> Build:
    result = validated or validate_repository(root)
    if not result.ok:
        raise InvalidInputError(result.diagnostics)
    config = result.config
    _check_environment(config, environment)
    # What is loaded lives until the end: keep the cyclic collector from walking it again
    # and again while rendering allocates (a tenth of a large render). Unfrozen after,
    # so long-lived callers (tests, diff) still collect it.
    gc.freeze()
    try:
        sources = crd_sources(root, config, crds)
        checker = _Checker(config, sources)
        # Full objects are not cached (only summaries are): diff renders afresh.
        key = None
        if buildcache.enabled() and not keep_objects:
            key = buildcache.build_key(config, buildcache.crd_inputs(sources))
        files: dict[str, bytes] = {}
        models = []
        ordered = sorted(result.specs, key=lambda s: s.name)
        own: dict[str, bytes] = {}
        for done, spec in enumerate(ordered, 1):
            model, model_files_ = _model_result(spec, config, checker, key, keep_objects)
            own.update(model_files_)
            models.append(model)
            progress.step(done, len(ordered))
        files.update(own)
        duplicates = duplicate_objects(models, config)
        if duplicates:
            raise InvalidInputError(duplicates)
        checker.flux(models, config)
        if checker.diagnostics:
            raise InvalidInputError(checker.diagnostics)
        files = finish_layout(files, models, config)
    finally:
        gc.unfreeze()
    warnings = tuple(d for d in result.diagnostics if d.severity == "warning")
    notes = (*(f"{d.path}: {d.message}" for d in warnings), *checker.notes())
    if repository is not None and key is not None:
        model_keys = [buildcache.model_key(key, spec) for spec in ordered]
        buildcache.store_build(
            repository, model_keys, files, own, notes, result.failed_files, warnings
        )
    # Warnings the caller already reported (it passed `validated`) are not repeated.
    if validated:
        notes = notes[len(warnings) :]
    built = Build(root, config, tuple(models), files, notes, result.failed_files)
    return _filtered(built, environment)


@contextmanager
def _young_collections_only() -> Iterator[None]:
    """No full garbage collections while building; young objects are still collected.

    A full collection walks every object alive, and a build keeps what it loads to the
    end: at 10,000 specs the default thresholds made 13 of them (CPython 3.11), with
    no memory to show for it (peak RSS the same without them).
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], max(thresholds[2], 1_000_000))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _check_environment(config: Config, environment: str | None) -> None:
    if environment is not None and environment not in config.environments:
        known = ", ".join(config.environments)
        raise RenderError(f"unknown environment {environment!r} (declared: {known})")


def _filtered(built: Build, environment: str | None) -> Build:
    """`built` with only the files `kubectl kustomize` needs for one environment."""
    _check_environment(built.config, environment)
    if environment is None:
        return built
    files = {path: data for path, data in built.files.items() if in_environment(path, environment)}
    return replace(built, files=files)


def repository_key(root: Path, crds: Sequence[Path] = ()) -> str | None:
    """The key of a whole build: everything any model depends on, and every spec file.

    Only a build without problems is ever stored under it, so a config with problems
    (which a fresh validation reports) never finds one.
    """
    config, problems = load_config(root)
    if problems or (root / config.specs).is_symlink():
        return None
    sources = crd_sources(root, config, crds)
    key = buildcache.build_key(config, buildcache.crd_inputs(sources))
    return buildcache.repository_key(key, root, discover(root, config.specs))


def reused_build(
    root: Path, key: str | None = None, crds: Sequence[Path] = ()
) -> tuple[Build, tuple[Diagnostic, ...]] | None:
    """An earlier build of exactly this repository from the build cache, and the
    warnings its validation gave; None when anything it depends on changed."""
    if not buildcache.enabled():
        return None
    key = key or repository_key(root, crds)
    reused = buildcache.load_build(key) if key is not None else None
    if reused is None:
        return None
    config, _ = load_config(root)
    models = tuple(cached.model for cached in reused.models)
    built = Build(root, config, models, reused.files, reused.notes, reused.failed_files)
    return built, reused.warnings


def _model_result(
    spec: Spec, config: Config, checker: _Checker, key: str | None, keep_objects: bool
) -> tuple[ModelRender, Mapping[str, bytes]]:
    """One spec rendered, checked and laid out, or its result reused from the cache.

    Only a model that passed its checks is stored; one that failed is rendered (and
    reported) again each time.
    """
    entry = buildcache.model_key(key, spec) if key is not None else None
    cached = buildcache.load(entry) if entry is not None else None
    if cached is not None:
        checker.reuse(cached.skipped)
        return cached.model, cached.files
    model = render_spec(spec, config)
    passed, skipped = checker.model(model)
    files = model_files(model)
    kept = model if keep_objects else summary(model)
    if entry is not None and passed:
        buildcache.store(entry, buildcache.Cached(summary(model), files, skipped))
    return kept, files
