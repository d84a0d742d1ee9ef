"""`servegen schema`: write the JSON Schemas into the repository, or --check them.

They go to `schemas/` of the repository servegen runs in (or --out), where the editor
modelines of the spec files point; never into the installed package.
"""

from __future__ import annotations

from generator import schema, terminal
from generator.errors import EXIT_OK, ServegenError, UsageError
from generator.options import SchemaOptions

SCHEMA_DIR = "schemas"


def run(options: SchemaOptions) -> int:
    directory = options.out or options.common.root / SCHEMA_DIR
    if options.check:
        stale = schema.stale_files(directory)
        if stale:
            raise ServegenError(
                f"stale JSON Schema(s) in {directory}: {', '.join(stale)}; run `servegen schema`"
            )
        terminal.summary(f"schemas in {directory} are up to date", color=options.common.color)
        return EXIT_OK
    try:
        if options.out is None:  # the repository's folder: no link in it is followed
            written = schema.write(options.common.root, SCHEMA_DIR)
        else:  # the folder the user named
            options.out.mkdir(parents=True, exist_ok=True)
            written = schema.write(options.out)
    except OSError as exc:
        raise UsageError(f"--out {directory}: {exc.strerror or exc}") from exc
    terminal.summary(
        f"wrote {len(written)} of {len(schema.rendered())} schema files to {directory}",
        color=options.common.color,
    )
    return EXIT_OK
