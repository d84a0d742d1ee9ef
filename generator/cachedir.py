"""Where servegen keeps its caches: `$XDG_CACHE_HOME/servegen`, else `~/.cache/servegen`.

The XDG Base Directory specification has a relative `XDG_CACHE_HOME` ignored as
invalid: taken as it is, it would put the cache inside whatever folder servegen runs in
(a spec repository, where `git status` then shows it).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path


def servegen_cache() -> Path:
    return _servegen_cache(os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))


@functools.lru_cache(maxsize=8)
def _servegen_cache(xdg: str | None, home: str | None) -> Path:
    # Keyed by the variables it reads: Path.home() per call was a twentieth of a cold build.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "servegen"
