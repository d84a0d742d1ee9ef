"""servegen's version: defined once, in the package metadata (pyproject.toml)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def servegen_version() -> str:
    try:
        return version("servegen")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
