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


def run(options: ValidateOptions) -> int:
    color = options.common.color
    try:
        with terminal.progress_bar("validating", color=color):
            built = build(options.common.root, crds=options.crds)
    except InvalidInputError as exc:
        diagnostics = list(exc.diagnostics)
        report(diagnostics, options.format, summary=problems_summary(diagnostics), color=color)
        return EXIT_INVALID
    warnings = list(built.warnings)
    for note in built.notes[len(warnings) :]:  # the warnings come first, as notes
        terminal.note(note, color=color)
    files = built.spec_file_count()
    summary = problems_summary(warnings, checked_files=files)
    summary = f"{counted(len(built.models), 'spec')} valid, {summary}"
    report(warnings, options.format, summary=summary, color=color)
    return EXIT_OK
