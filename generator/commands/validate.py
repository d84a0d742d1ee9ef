"""`servegen validate`: check the config, every spec, and what they render to.

Spec problems are collected from every file first; only when all specs are valid are they
rendered and the objects checked the way the cluster will judge them.
"""

from __future__ import annotations

from generator import terminal
from generator.errors import (
    EXIT_INVALID,
    EXIT_OK,
    Diagnostic,
    InvalidInputError,
    counted,
    problems_summary,
)
from generator.options import ValidateOptions
from generator.pipeline import Build, build, repository_key, reused_build
from generator.report import report
from generator.validate import validate_repository


def run(options: ValidateOptions) -> int:
    color = options.common.color
    key = repository_key(options.common.root, options.crds)  # before anything is read
    reused = reused_build(options.common.root, key)
    if reused is not None:  # nothing changed since a build that passed every check
        return _report_reused(options, *reused)
    result = validate_repository(options.common.root)
    diagnostics = list(result.diagnostics)
    if result.ok:
        try:
            with terminal.progress_bar("validating", color=color):
                built = build(
                    options.common.root, crds=options.crds, validated=result, cache_key=key
                )
        except InvalidInputError as exc:
            diagnostics.extend(exc.diagnostics)
        else:
            for note in built.notes:
                terminal.note(note, color=color)
    errors = any(d.severity == "error" for d in diagnostics)
    files = len({spec.path for spec in result.specs})
    summary = problems_summary(diagnostics, checked_files=files)
    if not errors:
        summary = f"{counted(len(result.specs), 'spec')} valid, {summary}"
    report(diagnostics, options.format, summary=summary, color=color)
    return EXIT_INVALID if errors else EXIT_OK


def _report_reused(options: ValidateOptions, built: Build, warnings: tuple[Diagnostic, ...]) -> int:
    """What a fresh run would print: the warnings, the notes, the counts."""
    color = options.common.color
    for note in built.notes[len(warnings) :]:  # the warnings come first, as notes
        terminal.note(note, color=color)
    files = len({model.path for model in built.models})
    summary = problems_summary(list(warnings), checked_files=files)
    summary = f"{counted(len(built.models), 'spec')} valid, {summary}"
    report(list(warnings), options.format, summary=summary, color=color)
    return EXIT_OK
