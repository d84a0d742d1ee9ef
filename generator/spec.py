"""The serve spec as written (`SpecDocument`), the same shape for every runtime.

A runtime's document is `SpecDocument[Model, Serve, Override]` with its own `kind`
literal: Model is its `spec` (the model), Serve its `serve` (how it is served) and
Override what an environment may override in `spec`. Generator code only relies on
what is here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import ConfigDict, Field, SkipValidation, create_model

from generator.fields import DnsLabel, Labels, StrictModel

ServeT = TypeVar("ServeT", bound=StrictModel)
SpecT = TypeVar("SpecT", bound=StrictModel)
# Covariant (documents are frozen), so a runtime written for one serve shape also takes
# documents whose serve section extends it (vllmserve-pooling's `task`).
ModelT_co = TypeVar("ModelT_co", bound=StrictModel, covariant=True)
ServeT_co = TypeVar("ServeT_co", bound=StrictModel, covariant=True)
OverrideT_co = TypeVar("OverrideT_co", bound=StrictModel, covariant=True)


def _disabled_override_schema(schema: dict[str, Any]) -> None:
    """`validate` judges an override's fields only once its environment is enabled (a
    disabled one is never merged): only that `serve` and `spec` are mappings. The schema
    says the same, so editors do not mark what `validate` accepts."""
    properties = schema["properties"]
    shaped = {part: properties[part] for part in ("serve", "spec")}
    for part, subschema in shaped.items():
        properties[part] = {
            key: subschema[key] for key in ("default", "description", "title") if key in subschema
        }
        properties[part]["type"] = ["object", "null"]
    disabled = {"const": False, "description": "Disabled: the override is judged once enabled."}
    schema["if"] = {"properties": {"enabled": disabled}, "required": ["enabled"]}
    schema["else"] = {"properties": shaped}


class EnvironmentOverride(StrictModel, Generic[ServeT, SpecT]):
    """Per-environment switch, model version (`spec`) and serve overrides."""

    model_config = ConfigDict(json_schema_extra=_disabled_override_schema)

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


class SpecDocument(StrictModel, Generic[ModelT_co, ServeT_co, OverrideT_co]):
    """A serve spec as written; a runtime's subclass names its `kind` literal."""

    # Built when first used: a runtime module defines a document per kind it serves
    # (and pydantic a class per parametrisation), while a run may meet only one.
    model_config = ConfigDict(defer_build=True)

    # The `spec` field naming the model's location (with any revision), and the `serve`
    # fields that are part of the model version too (generator/versions.py): what
    # `promote` copies and pinned environments check, whatever the runtime calls them.
    location_field: ClassVar[str] = "url"
    version_serve_fields: ClassVar[tuple[str, ...]] = ()

    kind: str = Field(description="The runtime that serves this model.")
    name: DnsLabel = Field(description="Unique name of this spec across the repository.")
    namespace: DnsLabel | None = Field(
        default=None,
        description="Namespace for every environment; default: the environment's, else "
        "the config default.",
    )
    labels: Labels = Field(default_factory=dict, description="Labels added to every object.")
    spec: ModelT_co = Field(description="The model: where it comes from and how it is exposed.")
    # An absent `serve` is read as `{}`: every serve field has a default, and a type
    # parameter cannot name its own default factory.
    serve: ServeT_co = Field(
        default_factory=dict,
        validate_default=True,
        description="How the model is served: resources, scaling, engine arguments.",
    )
    environments: dict[DnsLabel, EnvironmentOverride[ServeT_co, OverrideT_co]] = Field(
        default_factory=dict, description="Per-environment overrides."
    )


# What generator code holds when the runtime is not known statically. Only type checkers
# see the parametrised form: at run time pydantic would build a whole model class for it
# (about 10 ms of every cold start), and nothing validates against it.
if TYPE_CHECKING:
    AnySpecDocument = SpecDocument[Any, Any, Any]
else:
    AnySpecDocument = SpecDocument


def deep_merge(base: Any, override: Any) -> Any:
    """Merge `override` over `base`: mappings key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override
