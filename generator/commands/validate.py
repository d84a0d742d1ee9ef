"""`servegen validate`: check the config, every spec, and what they render to.

Spec problems are collected from every file first; only when all specs are valid are they
rendered and the objects checked the way the cluster will judge them.
"""

from __future__ import annotations

import sys

from generator.errors import EXIT_INVALID, EXIT_OK, InvalidInputError
from generator.options import ValidateOptions
from generator.pipeline import build
from generator.report import report
from generator.validate import validate_repository


def run(options: ValidateOptions) -> int:
    result = validate_repository(options.common.root)
    diagnostics = list(result.diagnostics)
    if result.ok:
        try:
            built = build(options.common.root, crds=options.crds, validated=result)
        except InvalidInputError as exc:
            diagnostics.extend(exc.diagnostics)
        else:
            for note in built.notes:
                print(f"servegen: note: {note}", file=sys.stderr)
    errors = sum(1 for d in diagnostics if d.severity == "error")
    if errors:
        files = len({d.path for d in diagnostics if d.severity == "error"})
        summary = f"servegen: {errors} error(s) in {files} file(s)"
    else:
        summary = f"servegen: {len(result.specs)} spec(s) valid"
    report(diagnostics, options.format, summary=summary)
    return EXIT_INVALID if errors else EXIT_OK
