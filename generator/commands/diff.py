"""`servegen diff`: rendered-object diff against a base revision (a report: exit 0)."""

from __future__ import annotations

import sys

from generator.diff import compute, render
from generator.errors import EXIT_OK
from generator.options import DiffOptions


def run(options: DiffOptions) -> int:
    result = compute(options)
    if options.output_file is not None:
        full = render(result, options.format, None)
        options.output_file.write_text(full, encoding="utf-8")
    sys.stdout.write(render(result, options.format, options.max_chars))
    return EXIT_OK
