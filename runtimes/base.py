"""The interface every runtime implements, and the injection-proof template renderer.

A runtime is one module: a SpecDocument subclass (what users write), a `Runtime` over
that document type whose methods receive it fully typed (`spec_problems()` for the rules
field validation cannot express, `context()` turning a validated spec into template
variables, `expected()` naming the objects it must produce, `endpoint()` for the
catalog), and Jinja2 templates under templates/<kind>/.

Templates cannot be tricked by spec values: they never reach YAML text at all. Every
`{{ expression }}` is finalised to an opaque placeholder token, and its value is kept
aside; the template's own text (placeholders in place of values) is parsed, and the
values are put in as leaves of the tree, copied through JSON so they are plain data.
A value can thus only ever be one node, whatever characters it holds. Undefined
variables are errors, and the objects must be exactly the ones `expected()` names.
The parsed skeleton depends only on which template branches ran, so it is parsed once
per shape and reused.
"""

from __future__ import annotations

import json
import marshal
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from generator.config import Config
from generator.errors import RenderError
from generator.fields import Resources
from generator.k8sformats import parse_quantity
from generator.spec import AnySpecDocument
from generator.yamlio import parse_rendered

if TYPE_CHECKING:
    # Imported where templates are first rendered: a build answered from the cache
    # renders nothing, and Jinja is about 50 ms of a fresh process.
    import jinja2

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
        return cls(*cls.key_of(obj))

    @staticmethod
    def key_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
        """The fields of ObjectRef.of(obj), which compare and sort as it does."""
        return (str(obj.get("apiVersion")), str(obj.get("kind")), str(obj["metadata"]["name"]))

    def key(self) -> tuple[str, str, str]:
        return (self.api_version, self.kind, self.name)

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
            "endpoints": self.urls(),
        }

    def urls(self) -> list[str]:
        """The URL of each of its paths (the catalog's `endpoints`)."""
        base = self.base_url.rstrip("/")
        return [base + path for path in self.paths]


@dataclass(frozen=True)
class Facts:
    """What policy checks need to know about a rendered spec."""

    images: tuple[str, ...] = ()
    gpus_per_replica: int = 0


# A placeholder is MARK, the value's index, MARK: a plain YAML scalar that reads back as
# that very string. MARK is a private-use character no template contains; a scalar that
# holds one but is not exactly one placeholder means a template spliced a value into
# other text, which is refused.
MARK = "\ue000"
_PLACEHOLDER = re.compile(f"{MARK}([0-9]+){MARK}")
# The render's value list, under a key no template can name (it is not an identifier).
VALUES = "servegen values"


@cache
def _environment() -> jinja2.Environment:
    import jinja2

    # Defined here, beside its one import: it runs once per template expression, and
    # an import statement inside it would be paid every time.
    undefined = jinja2.Undefined

    @jinja2.pass_context
    def to_placeholder(context: jinja2.runtime.Context, value: Any) -> str:
        """Finalize every template expression into a placeholder; the value is kept
        aside. Taking the context also stops Jinja from finalizing constant expressions
        while it compiles a template, so every placeholder belongs to the render that
        made it."""
        if isinstance(value, undefined):  # pragma: no cover - StrictUndefined raises
            raise RenderError("undefined template value")
        # The variables the render was given: a template's own {% set %} names are
        # identifiers, so none of them hides VALUES (which is not one).
        values: list[Any] = context.parent[VALUES]
        values.append(value)
        return f"{MARK}{len(values) - 1}{MARK}"

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        # Templates ship with the package and never change while servegen runs: no
        # stat of the template file on every render.
        auto_reload=False,
        finalize=to_placeholder,
        autoescape=False,  # noqa: S701 - YAML, not HTML: values never reach the text
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def _template(name: str) -> jinja2.Template:
    # Templates never change while servegen runs (auto_reload is off): one lookup each,
    # not Jinja's cache key and loader check on every render.
    template = _environment().get_template(name)
    # Jinja keeps a template's globals as a ChainMap over the environment's, and every
    # render copies it key by key and lists its keys again (a third of rendering a
    # template). Neither changes once loaded, so a plain dict of them reads the same.
    template.globals = dict(template.globals)
    return template


DocT = TypeVar("DocT", bound=AnySpecDocument)


class Runtime(ABC, Generic[DocT]):
    """One way of serving a model, over its document type `DocT` (what users write).

    Subclasses live one per module in `runtimes/`.
    """

    kind: ClassVar[str]
    # Set by each subclass to its DocT (a ClassVar cannot name a type parameter).
    document: type[DocT]
    templates: ClassVar[tuple[str, ...]]
    # Runtimes that share templates (the vLLM variants) name one folder for all of them.
    template_dir: ClassVar[str | None] = None
    # `spec` fields an environment may override (environments.<env>.spec): the model
    # version, never what names or shapes the endpoint (see README, "Staged rollouts").
    spec_overrides: ClassVar[tuple[str, ...]] = ()

    def spec_problems(self, doc: DocT, config: Config) -> Iterable[Problem]:
        """What a schema-valid spec still gets wrong: cross-field rules and engine facts."""
        return ()

    @abstractmethod
    def context(self, doc: DocT, config: Config) -> dict[str, Any]:
        """Template variables for one spec (already merged for its environment)."""

    @abstractmethod
    def expected(self, doc: DocT, config: Config) -> list[ObjectRef]:
        """The exact objects the templates must produce for this spec."""

    @abstractmethod
    def endpoint(self, doc: DocT, config: Config, namespace: str) -> Endpoint:
        """The catalog entry for this spec in a namespace."""

    def facts(self, doc: DocT, config: Config) -> Facts:
        return Facts()

    def namespace_in(self, doc: DocT, config: Config, environment: str) -> str:
        """The namespace this spec's objects go to in `environment`."""
        return config.namespace_for(environment, doc.namespace)

    def endpoint_in(self, doc: DocT, config: Config, environment: str, namespace: str) -> Endpoint:
        """The catalog entry in `environment` (runtimes whose URL depends on it override)."""
        return self.endpoint(doc, config, namespace)

    def controller_objects(self, obj: Mapping[str, Any]) -> Iterable[tuple[dict[str, Any], str]]:
        """Objects a controller makes in the cluster for the rendered `obj`, each with
        who makes them (`made by ... of`): their names are taken as if rendered."""
        return ()

    def shared_object_hint(self, obj: Mapping[str, Any], namespace: str) -> str | None:
        """How to resolve two environments on one cluster writing `obj`, when the
        general advice (different namespaces or clusters) does not apply."""
        return None

    def render(self, doc: DocT, config: Config) -> list[dict[str, Any]]:
        """Render the templates into objects, and verify they are the expected ones."""
        import jinja2

        values: list[Any] = []
        variables = {**self.context(doc, config), VALUES: values}
        parts = []
        for name in self.templates:
            try:
                parts.append(
                    _template(f"{self.template_dir or self.kind}/{name}").render(variables)
                )
            except jinja2.TemplateError as exc:
                raise RenderError(f"{self.kind}/{name}: template error: {exc}") from exc
        shape = _shape("\n---\n".join(parts))
        objects = shape.objects(plain_values(values))
        self._verify(doc, config, objects)
        return objects

    def _verify(self, doc: DocT, config: Config, objects: list[Any]) -> None:
        if not all(
            isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) for obj in objects
        ):
            raise RenderError(f"{self.kind}: rendered a document that is not an object")
        # Compared as tuples of their fields, as ObjectRefs compare, without a dataclass
        # made per object and a Python __lt__ per comparison.
        got = sorted(ObjectRef.key_of(obj) for obj in objects)
        want = sorted(ref.key() for ref in self.expected(doc, config))
        if got != want:
            raise RenderError(
                f"{self.kind} spec {doc.name!r}: rendered {_refs(got)} but expected {_refs(want)}"
            )


def _refs(keys: list[tuple[str, str, str]]) -> str:
    return ", ".join(str(ObjectRef(*key)) for key in keys)


def long_flag(arg: str) -> str | None:
    """The long option `arg` sets, spelt with dashes: `--port=1` and `--served_model_name`
    give `--port` and `--served-model-name` (vLLM reads `_` as `-`); None for anything
    that is not a long option."""
    if not arg.startswith("--"):
        return None
    return arg.partition("=")[0].replace("_", "-")


# Flags that move the server off the plain-HTTP TCP port the Service and the probes use
# (vllm v0.10.0, v0.33.0 and v0.34.0 cli_args.py: --ssl-* serve HTTPS; v0.33.0 --uds
# listens on a Unix socket): the pod would restart forever. KubeAI probes its vLLM
# pods the same way (kubeai v0.22.1 engine_vllm.go).
_UNREACHABLE_FLAGS = {
    "--uds": "the server would listen on a Unix socket, not the port the Service and probes reach",
    "--ssl-keyfile": "the server would speak HTTPS to the probes and clients, which speak HTTP",
    "--ssl-certfile": "the server would speak HTTPS to the probes and clients, which speak HTTP",
}


def utilization_request_problem(
    resources: Resources, own: Resources | None, resource: Literal["cpu", "mem"]
) -> Problem | None:
    """A request of 0 for the resource a utilization autoscaler divides by, or None.

    kubernetes v1.33 pkg/controller/podautoscaler/metrics/utilization.go
    GetResourceUtilizationRatio: usage over the pods' summed requests, and a sum of 0 is
    an error at every sync, so the autoscaler never scales. `resources` is what renders
    (profile and spec merged), `own` the spec's: the problem points where the 0 came from.
    """
    request = getattr(resources, resource)
    if request is None or parse_quantity(request):
        return None
    where = (
        ("serve", "resources", resource) if getattr(own, resource, None) else ("serve", "profile")
    )
    name = "CPU" if resource == "cpu" else "memory"
    return Problem(
        where,
        f"a {name} request of 0 leaves the autoscaler, which scales on {name} utilization, "
        f"nothing to divide by: it never scales; request more than 0",
    )


def vllm_unreachable_problems(index: int, arg: str) -> Iterable[Problem]:
    """`serve.args[index]` when it takes vLLM's server off the port it is probed on."""
    flag = long_flag(arg)
    if flag in _UNREACHABLE_FLAGS:
        yield Problem(("serve", "args", index), f"{flag}: {_UNREACHABLE_FLAGS[flag]}")


def vllm_claimed_flag(arg: str, flags: Iterable[str]) -> str | None:
    """Which of `flags` (long options, dashes) `arg` sets on vLLM's command line, spelt
    out or abbreviated: vLLM's parser keeps argparse's prefix matching (allow_abbrev;
    FlexibleArgumentParser, vllm v0.10.0 to v0.34.0), so `--por 9000` sets --port."""
    flag = long_flag(arg)
    if flag is None or len(flag) < 3:  # `--` ends the options
        return None
    return next((name for name in sorted(flags) if name.startswith(flag)), None)


def plain_values(values: list[Any]) -> list[Any]:
    """Fresh plain-data copies of template values, as JSON (hence YAML) would read them."""
    try:
        text = json.dumps(values, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RenderError(f"template value is not plain data: {exc}") from None
    copied: list[Any] = json.loads(text)
    return copied


@dataclass(frozen=True)
class _Shape:
    """A skeleton (the template text parsed, placeholders still in it), ready to fill.

    Its documents are kept in marshal's format, which makes a new tree of them in C,
    with where each placeholder is: the steps to its container, its key or index there,
    and its value's index. `frozen` is None when a placeholder is misplaced (spliced
    into text, or a key): fill() walks the skeleton then and refuses it as it says.
    """

    skeleton: list[Any]
    frozen: bytes | None
    holes: tuple[tuple[JsonPath, str | int, int], ...]

    def objects(self, values: list[Any]) -> list[Any]:
        """A new tree of every document, each placeholder replaced by its value."""
        if self.frozen is None:
            return [fill(obj, values) for obj in self.skeleton if obj is not None]
        # Bytes this process made from a parsed template, never read from outside.
        objects: list[Any] = marshal.loads(self.frozen)  # noqa: S302
        for steps, last, index in self.holes:
            node: Any = objects
            for step in steps:
                node = node[step]
            node[last] = values[index]
        return objects


def _shape_of(skeleton: list[Any]) -> _Shape:
    documents = [obj for obj in skeleton if obj is not None]
    holes: list[tuple[JsonPath, str | int, int]] = []
    whole = all(_holes(obj, (), index, holes) for index, obj in enumerate(documents))
    frozen = marshal.dumps(documents) if whole else None
    return _Shape(skeleton, frozen, tuple(holes))


def _holes(node: Any, steps: JsonPath, at: str | int, out: list[Any]) -> bool:
    """Add the placeholders of `node` (at `at` in the container `steps` lead to) to
    `out`; False when one is not a whole node, where fill() would refuse it."""
    if isinstance(node, str):
        if MARK not in node:
            return True
        match = _PLACEHOLDER.fullmatch(node)
        if match is None:
            return False
        out.append((steps, at, int(match[1])))
        return True
    inside = (*steps, at)
    if isinstance(node, dict):
        if any(isinstance(key, str) and MARK in key for key in node):
            return False
        return all(_holes(value, inside, key, out) for key, value in node.items())
    if isinstance(node, list):
        return all(_holes(item, inside, index, out) for index, item in enumerate(node))
    return True


# Shapes seen so far, by the text that parsed to them: one per combination of template
# branches, a handful per runtime. Bounded, in case a template's shape follows its values.
_SHAPES: dict[str, _Shape] = {}
_MAX_SHAPES = 1024


def _shape(text: str) -> _Shape:
    found = _SHAPES.get(text)
    if found is None:
        found = _shape_of(parse_rendered(text))
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()
        _SHAPES[text] = found
    return found


def fill(node: Any, values: list[Any]) -> Any:
    """A new tree: `node` with every placeholder replaced by its value."""
    kind = node.__class__
    if kind is str or isinstance(node, str):
        if MARK not in node:
            return node
        match = _PLACEHOLDER.fullmatch(node)
        if match is None:
            raise RenderError("a template put a value inside other text; values must be whole")
        return values[int(match[1])]
    if kind is dict or isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if isinstance(key, str) and MARK in key:
                raise RenderError("a template used a value as a key; keys must be literal")
            # A literal string (most leaves) is kept as it is, without a call.
            out[key] = (
                value if value.__class__ is str and MARK not in value else fill(value, values)
            )
        return out
    if kind is list or isinstance(node, list):
        return [fill(item, values) for item in node]
    return node
