"""servegen's version, defined once in the package metadata (pyproject.toml), and the
installed release of any distribution, read the cheap way.

`importlib.metadata.version` parses a distribution's whole METADATA file with the email
parser; servegen's holds the README, and the build key asks for six of them. Measured
on a cold `servegen validate`: about 8 ms of a 400 ms start, for six short strings that
the `<name>-<version>.dist-info` folder names already spell. The folders are looked for
along `sys.path` in order, as importlib.metadata does; tests hold the two to the same
answers.
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache

_DIST_INFO = ".dist-info"


@cache
def servegen_version() -> str:
    # A source tree that was never installed has no metadata at all.
    return installed_version("servegen") or "0+unknown"


def installed_version(distribution: str) -> str | None:
    """The version of the first installed `distribution` on sys.path, or None."""
    wanted = _normalized(distribution)
    for entry in sys.path:
        found = _dist_infos(entry or ".").get(wanted)
        if found is not None:
            return found
    return None


def _normalized(name: str) -> str:
    # PEP 503 names compare with runs of -_. as one _ and case folded; folder names
    # are written with their own spelling (ruamel_yaml-0.19.1, Jinja2-..., jinja2-...).
    return re.sub(r"[-_.]+", "_", name).lower()


@cache
def _dist_infos(folder: str) -> dict[str, str]:
    """{normalized name: version} of the dist-info folders directly in `folder`."""
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries]
    except OSError:  # a missing or unreadable sys.path entry, or a zip file
        return {}
    found: dict[str, str] = {}
    for name in names:
        if name.endswith(_DIST_INFO):
            project, dash, version = name[: -len(_DIST_INFO)].partition("-")
            if dash and version:
                found.setdefault(_normalized(project), version)
    return found
