"""Runtimes: one module per way of serving a model, registered by `kind`.

Adding a runtime means adding its module (a Runtime subclass over its own document
type) and its templates under templates/<kind>/, then listing it here. Nothing else in
the generator names a runtime.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generator.config import Config
    from runtimes.base import Problem, Runtime

# kind -> (module, class). A runtime's module is imported when a spec of its kind is
# first met: its pydantic models and templates cost start-up time, so a repository pays
# only for the runtimes it uses (and `servegen --help` for none).
_RUNTIMES: dict[str, tuple[str, str]] = {
    "kubeai-text": ("runtimes.kubeai_text", "KubeAIText"),
    "vllmserve-text": ("runtimes.vllmserve", "VLLMServeText"),
    "vllmserve-speech": ("runtimes.vllmserve", "VLLMServeSpeech"),
    "vllmserve-pooling": ("runtimes.vllmserve", "VLLMServePooling"),
    "huggingfaceserve": ("runtimes.huggingfaceserve", "HuggingFaceServe"),
}

# Rules about runtime settings in servegen.yaml (module, function(config) -> problems).
# They judge every repository, whatever kinds its specs use, so they live apart from
# the runtimes' modules and must stay cheap to import.
_CONFIG_RULES: tuple[tuple[str, str], ...] = (
    ("runtimes.vllm_engine", "config_problems"),
    ("runtimes.kserve_release", "config_problems"),
)


@cache
def get(kind: str) -> Runtime[Any] | None:
    where = _RUNTIMES.get(kind)
    if where is None:
        return None
    module, name = where
    runtime: Runtime[Any] = getattr(importlib.import_module(module), name)()
    return runtime


def registry() -> dict[str, Runtime[Any]]:
    """Every runtime, by kind (this imports them all)."""
    found = {kind: get(kind) for kind in _RUNTIMES}
    return {kind: runtime for kind, runtime in found.items() if runtime is not None}


def kinds() -> tuple[str, ...]:
    return tuple(_RUNTIMES)


def config_problems(config: Config) -> list[Problem]:
    """What the runtimes' settings in servegen.yaml get wrong (paths point into it)."""
    found: list[Problem] = []
    for module, name in _CONFIG_RULES:
        rule: Callable[[Config], Iterable[Problem]] = getattr(importlib.import_module(module), name)
        found.extend(rule(config))
    return found
