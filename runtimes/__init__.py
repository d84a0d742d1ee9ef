"""Runtimes: one module per way of serving a model, registered by `kind`.

Adding a runtime means adding its module (a Runtime subclass over its own document
type) and its templates under templates/<kind>/, then listing it here. Nothing else in
the generator names a runtime.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from runtimes.base import Runtime


@cache
def registry() -> dict[str, Runtime[Any]]:
    # Imported lazily so `servegen --help` does not pay for pydantic models and Jinja2.
    from runtimes.huggingfaceserve import HuggingFaceServe
    from runtimes.kubeai_text import KubeAIText
    from runtimes.vllmserve import VLLMServePooling, VLLMServeSpeech, VLLMServeText

    runtimes: list[Runtime[Any]] = [
        KubeAIText(),
        VLLMServeText(),
        VLLMServeSpeech(),
        VLLMServePooling(),
        HuggingFaceServe(),
    ]
    return {runtime.kind: runtime for runtime in runtimes}


def kinds() -> tuple[str, ...]:
    return tuple(registry())


def get(kind: str) -> Runtime[Any] | None:
    return registry().get(kind)
