"""`servegen schema`: write the JSON Schemas, or --check that the committed ones are current."""

from __future__ import annotations

from generator import schema
from generator.errors import EXIT_OK, ServegenError, UsageError
from generator.options import SchemaOptions


def run(options: SchemaOptions) -> int:
    directory = options.out or schema.packaged_dir()
    if options.check:
        stale = schema.stale_files(directory)
        if stale:
            raise ServegenError(
                f"stale JSON Schema(s) in {directory}: {', '.join(stale)}; run `servegen schema`"
            )
        print(f"servegen: schemas in {directory} are up to date")
        return EXIT_OK
    try:
        written = schema.write(directory)
    except OSError as exc:
        raise UsageError(f"--out {directory}: {exc.strerror or exc}") from exc
    print(f"servegen: wrote {len(written)} schema file(s) to {directory}")
    return EXIT_OK
