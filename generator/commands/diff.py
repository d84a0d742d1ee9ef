"""`servegen diff`: rendered-object diff against a base revision (a report: exit 0)."""

from __future__ import annotations

import sys

from generator.diff import compare, format_diff
from generator.errors import EXIT_OK, UsageError
from generator.options import DiffOptions


def run(options: DiffOptions) -> int:
    target = options.output_file
    if target is not None and not target.parent.is_dir():  # before the slow part
        raise UsageError(f"--output-file {target}: no folder {target.parent}")
    result = compare(
        options.common.root,
        base=options.base,
        environment=options.environment,
        worktree=options.worktree,
        crds=options.crds,
    )
    if target is not None:
        full = format_diff(result, options.format, None)
        try:
            target.write_text(full, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--output-file {target}: {exc.strerror or exc}") from exc
    sys.stdout.write(format_diff(result, options.format, options.max_chars))
    return EXIT_OK
