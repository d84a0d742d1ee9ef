"""`python -m generator`: the `servegen` program."""

import sys
from pathlib import Path


def _drop_working_folder() -> None:
    """`python -m` puts the working folder first on sys.path. Inside a spec repository
    its own folders (the `schemas/` that `servegen init` writes, say) would then be
    imported in place of servegen's packages, and code committed there would run. The
    folder stays only when servegen itself is run from it (a source checkout)."""
    if not sys.path:
        return
    first = Path(sys.path[0] or ".").resolve()
    home = Path(__file__).resolve().parent.parent
    if first == Path.cwd().resolve() and first != home:
        del sys.path[0]


_drop_working_folder()

from generator.cli import entry  # noqa: E402 - after the path is made safe

entry()
