"""The serve spec envelope shared by every runtime.

A runtime module subclasses SpecDocument with its own `kind` literal, `spec` (the model)
and `serve` (how it is served) models; generator code only relies on what is here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import Field, SkipValidation, create_model

from generator.fields import DnsLabel, Labels, StrictModel

ServeT = TypeVar("ServeT", bound=StrictModel)
SpecT = TypeVar("SpecT", bound=StrictModel)


class EnvironmentOverride(StrictModel, Generic[ServeT, SpecT]):
    """Per-environment switch, model version (`spec`) and serve overrides."""

    enabled: bool = Field(default=True, description="Render this model in the environment.")
    # Validated after merging (an override alone is partial: cross-field rules only make
    # sense on the result), so the type here documents the shape for the JSON Schema.
    serve: SkipValidation[ServeT] | None = Field(
        default=None,
        description="Deep-merged over `serve` for this environment: mappings merge key by "
        "key, lists and scalars replace.",
    )
    # Same as `serve`: validated on the merged result. Which fields may appear is the
    # runtime's `spec_overrides`; the model here carries just those, for the schema.
    spec: SkipValidation[SpecT] | None = Field(
        default=None,
        description="Deep-merged over `spec` for this environment: the model version "
        "(URL or path with its revision, image, adapters) this environment runs.",
    )


def spec_override_model(model: type[StrictModel], fields: Sequence[str]) -> type[StrictModel]:
    """The shape of `environments.<env>.spec`: `fields` of `model`, each optional.

    Field constraints and descriptions are kept, so editors check an override the way
    they check the field itself.
    """
    definitions: dict[str, Any] = {}
    for name in fields:
        info = model.model_fields[name]
        copied = copy.copy(info)
        copied.default, copied.default_factory = None, None
        # Not nullable: `null` would not unset the base value, it would be refused.
        definitions[name] = (info.annotation, copied)
    override: type[StrictModel] = create_model(
        f"{model.__name__}Override",
        __base__=StrictModel,
        __doc__=f"What an environment may override in `spec`: {', '.join(fields)}.",
        **definitions,
    )
    return override


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
