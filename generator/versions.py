"""The model version an environment runs: model location, revision, image and adapters.

This is what `servegen promote` copies between environments and what `servegen diff`
puts first in a review ("prod: Qwen/Qwen2.5-7B-Instruct a1b2c3 -> d4e5f6"). It is read
from the merged spec, so it is the same for every runtime whatever objects it renders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from generator.spec import AnySpecDocument

# hf://org/model@revision (huggingface:// and KServe's org/model:revision too); a query
# string (KubeAI's ?...) is not part of the revision.
_HF = re.compile(r"^(?:hf|huggingface)://([^@:?]+)(?:[@:]([^?]+))?(\?.*)?$")


@dataclass(frozen=True)
class ModelVersion:
    model: str  # hf://org/model is shown as org/model; other locations in full
    revision: str | None = None
    image: str | None = None
    adapters: tuple[str, ...] = ()  # name=url

    def __str__(self) -> str:
        parts = [self.model, self.revision or "(default revision)"]
        if self.image:
            parts.append(f"image {self.image}")
        if self.adapters:
            parts.append(f"adapters {', '.join(self.adapters)}")
        return " ".join(parts)


def version_of(doc: AnySpecDocument) -> ModelVersion:
    """The version of a validated (merged) spec document."""
    spec = doc.spec
    location = str(getattr(spec, doc.location_field))
    model, revision = location, None
    match = _HF.fullmatch(location)
    if match:
        model, revision = match.group(1) + (match.group(3) or ""), match.group(2)
    # A runtime may take the revision as a serve field of its own.
    for name in doc.version_serve_fields:
        revision = revision or getattr(doc.serve, name)
    adapters = tuple(f"{a.name}={a.url}" for a in getattr(spec, "adapters", None) or ())
    return ModelVersion(model, revision, getattr(spec, "image", None), adapters)


def describe_change(old: ModelVersion | None, new: ModelVersion | None) -> str:
    """One line a reviewer reads at a glance: what moved, from what, to what."""
    if old is None and new is not None:
        return f"{new} (new)"
    if new is None and old is not None:
        return f"{old} (removed)"
    assert old is not None and new is not None
    parts = []
    if old.model != new.model:
        parts.append(f"{_rev(old)} -> {_rev(new)}")
    elif old.revision != new.revision:
        parts.append(f"{new.model} {old.revision or '(default)'} -> {new.revision or '(default)'}")
    else:
        parts.append(_rev(new))
    if old.image != new.image:
        parts.append(f"image {old.image or '(default)'} -> {new.image or '(default)'}")
    if old.adapters != new.adapters:
        before, after = ", ".join(old.adapters) or "none", ", ".join(new.adapters) or "none"
        parts.append(f"adapters {before} -> {after}")
    return "; ".join(parts)


def _rev(version: ModelVersion) -> str:
    return f"{version.model}@{version.revision}" if version.revision else version.model
