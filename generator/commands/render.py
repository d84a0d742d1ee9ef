"""`servegen render`: render the repository into the output folder (or --check it)."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from generator import terminal
from generator.errors import EXIT_INVALID, EXIT_OK, UsageError, counted
from generator.options import RenderOptions
from generator.outtree import in_environment
from generator.pipeline import Build, build, young_collections_only
from generator.write import MANIFEST, CannotWriteError, everything, stale_paths, write_tree


def run(options: RenderOptions) -> int:
    started = time.perf_counter()
    root, color = options.common.root, options.common.color
    if options.out is not None and options.out.exists() and not options.out.is_dir():
        raise UsageError(f"--out {terminal.shown_path(options.out)}: not a folder")
    with terminal.progress_bar("rendering", color=color):
        result = build(root, environment=options.environment, crds=options.crds)
    for note in result.notes:
        terminal.note(note, color=color)
    out = options.out or root / result.config.output
    scope: Callable[[str], bool] = (
        functools.partial(in_environment, environment=options.environment)
        if options.environment
        else everything
    )
    shown = terminal.shown_path(out)
    files, tree = result.files, result.tree
    rendered = "" if options.check else _rendered(result, options.environment)
    # The models' summaries: what they hold is for the check's or the write's reading of
    # the output folder to reuse (14 MB at 10,000 specs; a check of an output nothing
    # vouches for peaked 20 MB higher than the write with them still held).
    del result
    if options.check:
        stale = stale_paths(out, files, scope, tree=tree)
        for path in stale:
            print(f"{shown}/{path}: {_how_stale(out, path, files)}", file=sys.stderr)
        if stale:
            verb = "is" if len(stale) == 1 else "are"
            terminal.summary(
                f"{counted(len(stale), 'output file')} in {shown} {verb} not as rendered; "
                "run `servegen render`",
                ok=False,
                color=color,
            )
            return EXIT_INVALID
        terminal.summary(f"{shown} is up to date", color=color)
        return EXIT_OK
    try:
        # The build's objects stay alive until the process ends: a full collection
        # while writing would walk them all for nothing (260 ms at 10,000 specs).
        with young_collections_only():
            stats = write_tree(out, files, scope, tree=tree)
    except CannotWriteError as exc:
        if options.out is None:
            raise
        raise UsageError(f"--out {terminal.shown_path(options.out)}: {exc.message}") from exc
    elapsed = (time.perf_counter() - started) * 1000
    terminal.summary(
        f"rendered {rendered} into {shown}: "
        f"{len(stats.written)} written, {len(stats.removed)} removed, "
        f"{stats.unchanged} unchanged ({elapsed:.0f} ms)",
        color=color,
    )
    return EXIT_OK


def _rendered(result: Build, environment: str | None) -> str:
    """`10 models (31 objects)`: of one environment when --env names it."""
    if environment is None:
        models, objects = len(result.models), result.object_count()
    else:
        present = [
            m.environments[environment] for m in result.models if environment in m.environments
        ]
        models, objects = len(present), sum(len(env.objects) for env in present)
    return f"{counted(models, 'model')} ({counted(objects, 'object')})"


def _how_stale(out: Path, path: str, files: Mapping[str, bytes]) -> str:
    """What `render` would do to a file `render --check` lists."""
    if path in files and not os.path.lexists(out / path):
        return "missing (render adds it)"
    if path not in files and path != MANIFEST:
        return "no longer rendered (render removes it)"
    return "stale"
