"""The whole pipeline, load -> validate -> render -> check -> lay out, as one call.

Commands (render, validate, diff, publish, watch) are thin loops over `build()`; it never
writes anything, so a failure at any step leaves every output untouched.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generator import progress
from generator.config import CONFIG_FILE, Config
from generator.errors import Diagnostic, InvalidInputError, RenderError
from generator.flux import flux_objects
from generator.layout import finish_layout, model_files
from generator.render import ModelRender, duplicate_objects, render_spec, summary
from generator.validate import Validated, validate_repository

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

    def model(self, model: ModelRender) -> None:
        for env, rendered in model.environments.items():
            for problem in self._problems(rendered.objects):
                message = (
                    f"rendered {problem.kind}/{problem.name} (environment {env}) is invalid: "
                    f"{problem.path}: {problem.message}"
                )
                self.diagnostics.append(Diagnostic(model.path, model.line, model.col, "", message))

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
) -> Build:
    """Validate, render, check and lay out the repository at `root`; raise on any error.

    Each spec streams through render -> check -> layout; unless `keep_objects`, only a
    summary of its objects (identities, what Flux health checks need) is kept after
    that, so memory holds output bytes rather than every rendered object at once.
    """
    result = validated or validate_repository(root)
    if not result.ok:
        raise InvalidInputError(result.diagnostics)
    config = result.config
    if environment is not None and environment not in config.environments:
        known = ", ".join(config.environments)
        raise RenderError(f"unknown environment {environment!r} (declared: {known})")
    # What is loaded lives until the end: keep the cyclic collector from walking it again
    # and again while rendering allocates (a tenth of a large render). Unfrozen after,
    # so long-lived callers (tests, diff) still collect it.
    gc.freeze()
    try:
        checker = _Checker(config, crd_sources(root, config, crds))
        files: dict[str, bytes] = {}
        models = []
        ordered = sorted(result.specs, key=lambda s: s.name)
        for done, spec in enumerate(ordered, 1):
            model = render_spec(spec, config)
            checker.model(model)
            files.update(model_files(model))
            models.append(model if keep_objects else summary(model))
            progress.step(done, len(ordered))
        duplicates = duplicate_objects(models, config)
        if duplicates:
            raise InvalidInputError(duplicates)
        checker.flux(models, config)
        if checker.diagnostics:
            raise InvalidInputError(checker.diagnostics)
        files = finish_layout(files, models, config)
    finally:
        gc.unfreeze()
    if environment is not None:
        files = {path: data for path, data in files.items() if in_environment(path, environment)}
    # Warnings the caller already reported (it passed `validated`) are not repeated.
    warnings = () if validated else tuple(d for d in result.diagnostics if d.severity == "warning")
    notes = (*(f"{d.path}: {d.message}" for d in warnings), *checker.notes())
    return Build(root, config, tuple(models), files, notes, result.failed_files)


def in_environment(path: str, environment: str) -> bool:
    parts = path.split("/")
    if parts[0] in ("clusters", "endpoints", "flux", "rbac"):
        return parts[1] in (environment, f"{environment}.json")
    if parts[0] == "models" and len(parts) > 3 and parts[2] == "overlays":
        return parts[3] == environment
    return True
