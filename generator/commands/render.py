"""`servegen render`: render the repository into the output folder (or --check it)."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable

from generator.errors import EXIT_INVALID, EXIT_OK, UsageError
from generator.options import RenderOptions
from generator.pipeline import build, in_environment
from generator.write import CannotWriteError, stale_paths, write_tree


def run(options: RenderOptions) -> int:
    started = time.perf_counter()
    root = options.common.root
    if options.out is not None and options.out.exists() and not options.out.is_dir():
        raise UsageError(f"--out {options.out}: not a folder")
    result = build(root, environment=options.environment, crds=options.crds)
    for note in result.notes:
        print(f"servegen: note: {note}", file=sys.stderr)
    out = options.out or root / result.config.output
    scope: Callable[[str], bool] = (
        functools.partial(in_environment, environment=options.environment)
        if options.environment
        else (lambda _path: True)
    )
    if options.check:
        stale = stale_paths(out, result.files, scope)
        for path in stale:
            print(f"{out / path}: stale", file=sys.stderr)
        if stale:
            print(f"servegen: {len(stale)} output file(s) are stale; run `servegen render`")
            return EXIT_INVALID
        print(f"servegen: {out} is up to date")
        return EXIT_OK
    try:
        stats = write_tree(out, result.files, scope)
    except CannotWriteError as exc:
        if options.out is None:
            raise
        raise UsageError(f"--out {options.out}: {exc.message}") from exc
    elapsed = (time.perf_counter() - started) * 1000
    print(
        f"servegen: rendered {len(result.models)} model(s), {result.object_count()} object(s) "
        f"into {out}: {len(stats.written)} written, {len(stats.removed)} removed, "
        f"{stats.unchanged} unchanged ({elapsed:.0f} ms)"
    )
    return EXIT_OK
