"""`servegen validate`: check the config and every spec; report all problems."""

from __future__ import annotations

from generator.errors import EXIT_INVALID, EXIT_OK
from generator.options import ValidateOptions
from generator.report import report
from generator.validate import validate_repository


def run(options: ValidateOptions) -> int:
    result = validate_repository(options.common.root)
    errors = sum(1 for d in result.diagnostics if d.severity == "error")
    if errors:
        summary = f"servegen: {errors} error(s) in {len(result.failed_files)} file(s)"
    else:
        summary = f"servegen: {len(result.specs)} spec(s) valid"
    report(result.diagnostics, options.format, summary=summary)
    return EXIT_INVALID if errors else EXIT_OK
