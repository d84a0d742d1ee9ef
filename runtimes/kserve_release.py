"""The KServe releases huggingfaceserve's rules follow, and the warning for another.

Each rule in runtimes/huggingfaceserve.py names the KServe file and release it was read
from, all between v0.15 and v0.20.0 (the server's parsers in python/kserve and
python/huggingfaceserver, the controller's pkg/constants), and the bundled
InferenceService CRD is v0.20.0's. A cluster on another release may read the same
InferenceService differently, so servegen.yaml naming one is warned about, once.
Imported for every repository (see runtimes/__init__.py): keep it small.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from runtimes.base import Problem

if TYPE_CHECKING:
    from generator.config import Config

SUPPORTED_FROM_MINOR = 15
SUPPORTED_BELOW_MINOR = 21


def config_problems(config: Config) -> Iterator[Problem]:
    """`kserve.version` outside the releases the rules were checked against."""
    kserve = config.kserve
    if kserve.at_least(SUPPORTED_FROM_MINOR) and not kserve.at_least(SUPPORTED_BELOW_MINOR):
        return
    yield Problem(
        ("kserve", "version"),
        f"KServe {kserve.version} is outside the releases servegen checks huggingfaceserve "
        f"specs against (0.{SUPPORTED_FROM_MINOR} to 0.{SUPPORTED_BELOW_MINOR - 1}): "
        "the runtime's flags, deployment modes and routes, and the bundled "
        "InferenceService CRD, follow those releases and may not match it",
        "warning",
    )
