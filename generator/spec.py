"""The serve spec envelope shared by every runtime.

A runtime module subclasses SpecDocument with its own `kind` literal, `spec` (the model)
and `serve` (how it is served) models; generator code only relies on what is here.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import Field, SkipValidation

from generator.fields import DnsLabel, Labels, StrictModel

ServeT = TypeVar("ServeT", bound=StrictModel)


class EnvironmentOverride(StrictModel, Generic[ServeT]):
    """Per-environment switch and serve overrides."""

    enabled: bool = Field(default=True, description="Render this model in the environment.")
    # Validated after merging (an override alone is partial: cross-field rules only make
    # sense on the result), so the type here documents the shape for the JSON Schema.
    serve: SkipValidation[ServeT] | None = Field(
        default=None,
        description="Deep-merged over `serve` for this environment: mappings merge key by "
        "key, lists and scalars replace.",
    )


class SpecDocument(StrictModel):
    """Fields every serve spec has, whatever its runtime."""

    kind: str = Field(description="The runtime that serves this model.")
    name: DnsLabel = Field(description="Unique name of this spec across the repository.")
    namespace: DnsLabel | None = Field(
        default=None,
        description="Namespace for every environment; default: the environment's, else "
        "the config default.",
    )
    labels: Labels = Field(default_factory=dict, description="Labels added to every object.")


def deep_merge(base: Any, override: Any) -> Any:
    """Merge `override` over `base`: mappings key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override
