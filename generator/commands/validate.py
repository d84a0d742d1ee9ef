"""`servegen validate`: check the config, every spec, and what they render to.

Spec problems are collected from every file first; only when all specs are valid are they
rendered and the objects checked the way the cluster will judge them.
"""

from __future__ import annotations

from generator import terminal
from generator.errors import EXIT_INVALID, EXIT_OK, InvalidInputError, counted, problems_summary
from generator.options import ValidateOptions
from generator.pipeline import build
from generator.report import report
from generator.validate import validate_repository


def run(options: ValidateOptions) -> int:
    color = options.common.color
    result = validate_repository(options.common.root)
    diagnostics = list(result.diagnostics)
    if result.ok:
        try:
            with terminal.progress_bar("validating", color=color):
                built = build(options.common.root, crds=options.crds, validated=result)
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
