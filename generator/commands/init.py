"""`servegen init DIR`: scaffold a spec repository that validates as it stands."""

from __future__ import annotations

from pathlib import Path

from generator import schema
from generator.errors import EXIT_OK, ServegenError, UsageError
from generator.options import InitOptions

SCAFFOLD = Path(__file__).resolve().parent.parent / "scaffold"

# Scaffold file -> where it goes in the new repository.
RENAMES = {
    "gitignore": ".gitignore",
    "workflows/servegen.yml": ".github/workflows/servegen.yml",
}


def scaffold_files() -> dict[str, bytes]:
    files = {}
    for path in sorted(SCAFFOLD.rglob("*")):
        if path.is_file():
            rel = path.relative_to(SCAFFOLD).as_posix()
            files[RENAMES.get(rel, rel)] = path.read_bytes()
    for name, content in schema.rendered().items():
        files[f"schemas/{name}"] = content.encode()
    return files


def run(options: InitOptions) -> int:
    target = options.directory
    if not target.is_absolute():
        target = options.common.root / target
    if target.exists() and not target.is_dir():
        raise ServegenError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not options.force:
        raise ServegenError(f"{target} is not empty; use --force to write into it anyway")
    files = scaffold_files()
    unknown = sorted(set(options.overwrite) - set(files))
    if unknown:
        raise UsageError(f"--overwrite {unknown[0]}: not a file init writes")
    written, kept = [], []
    for rel, data in files.items():
        path = target / rel
        # The user's own servegen.yaml, .gitignore or workflow is kept unless named.
        if (path.exists() or path.is_symlink()) and rel not in options.overwrite:
            kept.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()  # replace the link itself, never write through it
        path.write_bytes(data)
        written.append(rel)
    print(f"servegen: created {len(written)} file(s) in {target}")
    for rel in kept:
        print(f"servegen: kept existing {rel} (replace it with --overwrite {rel})")
    print(f"next: servegen -C {target} validate && servegen -C {target} render")
    return EXIT_OK
