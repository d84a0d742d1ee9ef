"""The whole pipeline, load -> validate -> render -> check -> lay out, as one call.

Commands (render, validate, diff, publish, watch) are thin loops over `build()`; it never
writes anything, so a failure at any step leaves every output untouched.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from generator.config import CONFIG_FILE, Config
from generator.errors import Diagnostic, InvalidInputError, RenderError
from generator.flux import flux_objects
from generator.layout import layout
from generator.render import ModelRender, duplicate_objects, render_all
from generator.validate import Validated, validate_repository

if TYPE_CHECKING:
    from generator.check import ManifestValidator


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

    return ManifestValidator(version, sources, kubeconform=kubeconform)


def check_models(
    models: Sequence[ModelRender], config: Config, sources: tuple[Path, ...]
) -> tuple[list[Diagnostic], list[str]]:
    """Validate every final object against Kubernetes and CRD schemas."""
    validation = config.validation
    validator = _validator(validation.kubernetes_version, sources, validation.kubeconform)
    diagnostics: list[Diagnostic] = []
    skipped: dict[str, int] = {}
    for model in models:
        for env, rendered in model.environments.items():
            result = validator.validate(rendered.objects)
            for kind in result.skipped_kinds:
                skipped[kind] = skipped.get(kind, 0) + 1
            for problem in result.problems:
                message = (
                    f"rendered {problem.kind}/{problem.name} (environment {env}) is invalid: "
                    f"{problem.path}: {problem.message}"
                )
                diagnostics.append(Diagnostic(model.path, model.line, model.col, "", message))
    for env in config.environments:
        result = validator.validate(flux_objects(models, config, env))
        for problem in result.problems:
            message = (
                f"rendered Flux {problem.kind}/{problem.name} is invalid: "
                f"{problem.path}: {problem.message}"
            )
            diagnostics.append(Diagnostic(CONFIG_FILE, 1, 1, "flux", message))
        for kind in result.skipped_kinds:
            skipped[kind] = skipped.get(kind, 0) + 1
    notes = [
        f"no CRD configured for {kind}: {count} object(s) not schema-checked "
        "(set validation.crds in servegen.yaml or pass --crds)"
        for kind, count in sorted(skipped.items())
    ]
    return diagnostics, notes


def build(
    root: Path,
    *,
    environment: str | None = None,
    crds: Sequence[Path] = (),
    validated: Validated | None = None,
) -> Build:
    """Validate, render, check and lay out the repository at `root`; raise on any error."""
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
        models = render_all(result.specs, config)
        diagnostics = duplicate_objects(models)
        if diagnostics:
            raise InvalidInputError(diagnostics)
        checked, notes = check_models(models, config, crd_sources(root, config, crds))
        if checked:
            raise InvalidInputError(checked)
        files = layout(models, config)
    finally:
        gc.unfreeze()
    if environment is not None:
        files = {path: data for path, data in files.items() if in_environment(path, environment)}
    return Build(root, config, tuple(models), files, tuple(notes), result.failed_files)


def in_environment(path: str, environment: str) -> bool:
    parts = path.split("/")
    if parts[0] in ("clusters", "endpoints", "flux"):
        return parts[1] in (environment, f"{environment}.json")
    if parts[0] == "models" and len(parts) > 3 and parts[2] == "overlays":
        return parts[3] == environment
    return True
