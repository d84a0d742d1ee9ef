"""The interface every runtime implements, and the injection-proof template renderer.

A runtime is one module: a SpecDocument subclass (what users write), a `context()` that
turns a validated spec into template variables, `expected()` naming the objects it must
produce, an `endpoint()` for the catalog, and Jinja2 templates under templates/<kind>/.

Templates cannot be tricked by spec values: every `{{ expression }}` is finalised to a
JSON scalar or flow collection (valid YAML that can only ever be one node), undefined
variables are errors, and the rendered text is parsed back and must contain exactly the
objects `expected()` names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import jinja2

from generator.config import Config
from generator.errors import RenderError
from generator.spec import SpecDocument
from generator.yamlio import json_scalar, parse_rendered

TEMPLATES = Path(__file__).parent / "templates"

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class ObjectRef:
    """The identity of a rendered object within its namespace."""

    api_version: str
    kind: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        return cls(str(obj.get("apiVersion")), str(obj.get("kind")), str(obj["metadata"]["name"]))

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Problem:
    """A rule a spec breaks; `path` points into the spec document (e.g. serve.scaling).

    A "warning" is reported but does not stop the spec from rendering.
    """

    path: JsonPath
    message: str
    severity: str = "error"


@dataclass(frozen=True)
class Endpoint:
    """What a client needs to call a served model (one row of endpoints/<env>.json)."""

    name: str
    runtime: str
    namespace: str
    base_url: str
    model: str
    adapters: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "namespace": self.namespace,
            "base_url": self.base_url,
            "model": self.model,
            "adapters": list(self.adapters),
            "features": list(self.features),
            "endpoints": [self.base_url.rstrip("/") + path for path in self.paths],
        }


@dataclass(frozen=True)
class Facts:
    """What policy checks need to know about a rendered spec."""

    images: tuple[str, ...] = ()
    gpus_per_replica: int = 0


def to_yaml_value(value: Any) -> str:
    """Finalize every template expression into one JSON (hence YAML) node."""
    if isinstance(value, jinja2.Undefined):  # pragma: no cover - StrictUndefined raises first
        raise RenderError("undefined template value")
    try:
        return json_scalar(value)
    except (TypeError, ValueError) as exc:
        raise RenderError(f"template value is not plain data: {exc}") from None


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        finalize=to_yaml_value,
        autoescape=False,  # noqa: S701 - YAML, not HTML: `finalize` does the escaping
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class Runtime(ABC):
    """One way of serving a model. Subclasses live one per module in `runtimes/`."""

    kind: ClassVar[str]
    document: ClassVar[type[SpecDocument]]
    templates: ClassVar[tuple[str, ...]]
    # Runtimes that share templates (the vLLM variants) name one folder for all of them.
    template_dir: ClassVar[str | None] = None
    # `spec` fields an environment may override (environments.<env>.spec): the model
    # version, never what names or shapes the endpoint (see README, "Staged rollouts").
    spec_overrides: ClassVar[tuple[str, ...]] = ()

    def check(self, doc: Any, config: Config) -> Iterable[Problem]:
        """Cross-field rules pydantic field validation cannot express."""
        return ()

    def config_problems(self, config: Config) -> Iterable[Problem]:
        """Rules about this runtime's settings in servegen.yaml (paths point into it)."""
        return ()

    @abstractmethod
    def context(self, doc: Any, config: Config) -> dict[str, Any]:
        """Template variables for one spec (already merged for its environment)."""

    @abstractmethod
    def expected(self, doc: Any, config: Config) -> list[ObjectRef]:
        """The exact objects the templates must produce for this spec."""

    @abstractmethod
    def endpoint(self, doc: Any, config: Config, namespace: str) -> Endpoint:
        """The catalog entry for this spec in a namespace."""

    def facts(self, doc: Any, config: Config) -> Facts:
        return Facts()

    def namespace_in(self, doc: Any, config: Config, environment: str) -> str:
        """The namespace this spec's objects go to in `environment`."""
        return config.namespace_for(environment, doc.namespace)

    def endpoint_in(self, doc: Any, config: Config, environment: str, namespace: str) -> Endpoint:
        """The catalog entry in `environment` (runtimes whose URL depends on it override)."""
        return self.endpoint(doc, config, namespace)

    def render(self, doc: Any, config: Config) -> list[dict[str, Any]]:
        """Render, parse back and verify the objects for one spec."""
        variables = self.context(doc, config)
        env = _environment()
        parts = []
        for name in self.templates:
            try:
                parts.append(
                    env.get_template(f"{self.template_dir or self.kind}/{name}").render(variables)
                )
            except jinja2.TemplateError as exc:
                raise RenderError(f"{self.kind}/{name}: template error: {exc}") from exc
        objects = [obj for obj in parse_rendered("\n---\n".join(parts)) if obj is not None]
        self._verify(doc, config, objects)
        return objects

    def _verify(self, doc: Any, config: Config, objects: list[Any]) -> None:
        if not all(
            isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) for obj in objects
        ):
            raise RenderError(f"{self.kind}: rendered a document that is not an object")
        got = sorted(ObjectRef.of(obj) for obj in objects)
        want = sorted(self.expected(doc, config))
        if got != want:
            raise RenderError(
                f"{self.kind} spec {doc.name!r}: rendered {', '.join(map(str, got))} "
                f"but expected {', '.join(map(str, want))}"
            )
