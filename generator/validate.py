"""Step 2: validate the config and every spec, collecting every problem with its position.

Field-level rules come from the pydantic models (runtimes own theirs); cross-field rules
from each runtime's `spec_problems()`; repository-wide rules (unique names, declared
environments, policy) live here. Nothing stops at the first error.
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

import runtimes
from generator.config import CONFIG_FILE, Config
from generator.errors import Diagnostic, cut
from generator.fields import PATTERN_HELP, arg_credential_problem, credential_name_problem
from generator.load import SourceFile, file_error, load_config_file, load_specs
from generator.pinning import pinning_problems
from generator.spec import AnySpecDocument, deep_merge
from generator.urls import redacted
from generator.yamlio import Document, JsonPath, format_path
from runtimes.base import Problem, Runtime

# The parts of a spec an environment may override, deep-merged in this order.
OVERRIDABLE = ("spec", "serve")


@dataclass(frozen=True)
class ValidatedSpec:
    """A serve spec that passed validation (frozen): where it came from, its runtime, its
    base document and its merged document per enabled environment."""

    path: str
    document: Document
    runtime: Runtime[Any]
    base: AnySpecDocument
    environments: dict[str, AnySpecDocument] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.base.name


@dataclass(frozen=True)
class FileResult:
    """What one spec file contributed: valid specs, problems, whether it failed."""

    path: str
    specs: tuple[ValidatedSpec, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def failed(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)


@dataclass(frozen=True)
class Validated:
    """The whole repository after validation."""

    root: Path
    config: Config
    specs: tuple[ValidatedSpec, ...]
    diagnostics: tuple[Diagnostic, ...]
    failed_files: frozenset[str]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


# --- the repository -------------------------------------------------------------------


def validate_repository(root: Path, config_override: Config | None = None) -> Validated:
    config, diagnostics = load_config(root) if config_override is None else (config_override, [])
    loaded = load_specs(root, config.specs)
    diagnostics.extend(loaded.diagnostics)
    # After a config error `config` holds defaults, so its spec folder says nothing.
    config_ok = not any(d.severity == "error" for d in diagnostics)
    missing = missing_spec_folder(root, config) if config_ok else None
    if missing is not None:
        diagnostics.append(missing)
    results = [validate_file(source, config) for source in loaded.files]
    for result in results:
        diagnostics.extend(result.diagnostics)
    specs = [spec for result in results for spec in result.specs]
    repository = check_repository(specs)
    diagnostics.extend(repository)
    failed = set(loaded.failed) | {r.path for r in results if r.failed}
    failed |= {d.path for d in repository if d.severity == "error"}
    if any(d.path == CONFIG_FILE and d.severity == "error" for d in diagnostics):
        failed.add(CONFIG_FILE)
    return Validated(root, config, tuple(specs), tuple(sorted(set(diagnostics))), frozenset(failed))


def load_config(root: Path) -> tuple[Config, list[Diagnostic]]:
    """The repository config, or defaults plus diagnostics when it is invalid."""
    source = load_config_file(root)
    if source is None:
        return Config(), []
    if isinstance(source, Diagnostic):
        return Config(), [source]
    config, diagnostics = config_from_source(source)
    if not diagnostics and source.documents:
        document = source.documents[0]
        diagnostics = linked_out(root, config, source.path, document)
        diagnostics = diagnostics or missing_crd_sources(root, config, source.path, document)
        if diagnostics:  # what a refused entry names is never read (through a link out)
            validation = config.validation.model_copy(update={"crds": []})
            config = config.model_copy(update={"validation": validation})
    return config, diagnostics


def missing_spec_folder(root: Path, config: Config) -> Diagnostic | None:
    """A warning when the spec folder does not exist: not an error (a new repository may
    have no specs yet), but a typo in `specs:` would otherwise render nothing without a
    word. (Something else by that name is the folder reader's error.) It names the
    folder, not a line of servegen.yaml: a build's warnings are kept in the build cache
    under the parsed config, which a moved line does not change."""
    if os.path.lexists(root / config.specs):
        return None
    where = "set by `specs:` in servegen.yaml" if config.specs != "specs" else "the default"
    message = f"spec folder {config.specs!r} ({where}) does not exist"
    return Diagnostic(config.specs, 0, 0, "", message, "warning")


def linked_out(root: Path, config: Config, path: str, document: Document) -> list[Diagnostic]:
    """Folders servegen.yaml names inside the repository (`specs`, `output`, relative
    `validation.crds`) that a symlink on the way leads out of it: servegen would read
    specs or CRDs from, or write the output to, wherever the link points."""
    named: list[tuple[JsonPath, str]] = [(("specs",), config.specs), (("output",), config.output)]
    named += [(("validation", "crds", index), e) for index, e in enumerate(config.validation.crds)]
    top = root.resolve()
    problems = []
    for where, value in named:
        if not (root / value).resolve().is_relative_to(top):
            line, col = document.position(where)
            message = f"{value!r} leads out of the repository through a symbolic link"
            problems.append(Diagnostic(path, line, col, format_path(where), message))
    return problems


def missing_crd_sources(
    root: Path, config: Config, path: str, document: Document
) -> list[Diagnostic]:
    """`validation.crds` entries that name nothing, or a folder with no CRD file, at
    their place in servegen.yaml."""
    from generator.crds import CRD_SUFFIXES  # here: only a config naming CRDs needs it

    problems = []
    for index, entry in enumerate(config.validation.crds):
        target = root / entry
        if not target.exists():
            message = f"{entry!r}: no such CRD file or folder (relative to the repository)"
        elif target.is_dir() and not any(
            p.suffix in CRD_SUFFIXES for p in target.rglob("*") if p.is_file()
        ):
            message = f"{entry!r}: the folder holds no YAML or JSON file"
        else:
            continue
        where: JsonPath = ("validation", "crds", index)
        line, col = document.position(where)
        problems.append(Diagnostic(path, line, col, format_path(where), message))
    return problems


def config_from_source(source: SourceFile) -> tuple[Config, list[Diagnostic]]:
    documents = source.documents
    if not documents or documents[0].data is None:
        return Config(), []
    if len(documents) > 1:
        line = documents[1].line
        return Config(), [file_error(source.path, "servegen.yaml must hold one document", line)]
    document = documents[0]
    if not isinstance(document.data, dict):
        return Config(), [_not_a_mapping(source.path, document, "the config")]
    try:
        config = Config.model_validate(document.data)
    except ValidationError as exc:
        return Config(), [_diagnostic(source.path, document, Config, err) for err in exc.errors()]
    problems = [*runtimes.config_problems(config), *_flux_problems(config)]
    return config, [_located(source.path, document, p, None) for p in problems]


def _flux_problems(config: Config) -> list[Problem]:
    # Imported here: generator.flux reads rendered models, whose module imports this one.
    from generator.flux import config_problems

    return config_problems(config)


# --- one file -------------------------------------------------------------------------


def validate_file(source: SourceFile, config: Config) -> FileResult:
    specs: list[ValidatedSpec] = []
    diagnostics: list[Diagnostic] = []
    if not any(doc.data is not None for doc in source.documents):
        diagnostics.append(file_error(source.path, "file holds no serve spec (it is empty)"))
    for document in source.documents:
        if document.data is None:
            continue
        spec, problems = validate_document(source.path, document, config)
        diagnostics.extend(problems)
        if spec is not None:
            specs.append(spec)
    return FileResult(source.path, tuple(specs), tuple(diagnostics))


def validate_document(
    path: str, document: Document, config: Config
) -> tuple[ValidatedSpec | None, list[Diagnostic]]:
    data = document.data
    if not isinstance(data, dict):
        return None, [_not_a_mapping(path, document, "a serve spec")]
    runtime, problem = _runtime_for(path, document)
    if runtime is None:
        return None, [problem] if problem else []
    model = runtime.document
    try:
        base = model.model_validate(data)
    except ValidationError as exc:
        return None, [_diagnostic(path, document, model, err) for err in exc.errors()]
    diagnostics = _check_environment_names(path, document, base, config)
    if diagnostics:
        return None, diagnostics
    base_problems = _problems(runtime, base, config)
    diagnostics.extend(_located(path, document, p, None) for p in base_problems)
    diagnostics.extend(_override_shapes(path, document))
    merged: dict[str, AnySpecDocument] = {}
    for env in config.environments:
        override = base.environments.get(env)
        if override is not None and not override.enabled:
            continue
        env_doc, problems = _merged_for(path, document, runtime, config, env, base, base_problems)
        diagnostics.extend(problems)
        if env_doc is not None:
            merged[env] = env_doc
            pins = pinning_problems(runtime, env_doc, config, env)
            diagnostics.extend(_located(path, document, p, env) for p in pins)
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    # The raw data is not needed once validated; positions come from the text.
    return ValidatedSpec(path, replace(document, data=None), runtime, base, merged), diagnostics


def _runtime_for(path: str, document: Document) -> tuple[Runtime[Any] | None, Diagnostic | None]:
    kind = document.data.get("kind")
    known = runtimes.kinds()
    if kind is None:
        line, col = document.position(())
        message = f"missing required field 'kind' (one of: {', '.join(known)})"
        return None, Diagnostic(path, line, col, "", message)
    runtime = runtimes.get(kind) if isinstance(kind, str) else None
    if runtime is None:
        line, col = document.position(("kind",))
        hint = _did_you_mean(str(kind), known)
        message = f"unknown kind {kind!r}{hint}; kinds are: {', '.join(known)}"
        return None, Diagnostic(path, line, col, "kind", message)
    return runtime, None


def _override_shapes(path: str, document: Document) -> list[Diagnostic]:
    """An override's `serve` and `spec` are mappings, in every environment (a disabled
    one too). They are validated only once merged, so a list or a string there would
    otherwise be dropped without a word (`serve: []`), or merged over the base."""
    found = []
    for env, override in (document.data.get("environments") or {}).items():
        for part in OVERRIDABLE:
            value = override.get(part) if isinstance(override, dict) else None
            if value is not None and not isinstance(value, dict):
                where = ("environments", env, part)
                line, col = document.position(where)
                message = f"must be a mapping of {part} fields to override, not {_kind(value)}"
                found.append(Diagnostic(path, line, col, format_path(where), message))
    return found


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _merged_for(
    path: str,
    document: Document,
    runtime: Runtime[Any],
    config: Config,
    env: str,
    base: AnySpecDocument,
    base_problems: list[Problem],
) -> tuple[AnySpecDocument | None, list[Diagnostic]]:
    data = dict(document.data)
    override = (data.get("environments") or {}).get(env) or {}
    # A part that is not a mapping is _override_shapes' to report; it merges nothing.
    parts = {p: v for p in OVERRIDABLE if isinstance(v := override.get(p), dict) and v}
    if not parts:
        return base, []  # the base itself, whose rules were already checked
    refused = _not_overridable(path, document, runtime, env, parts.get("spec"))
    if refused:  # merged without them, so the rest of the override is still checked
        parts["spec"] = {k: v for k, v in override["spec"].items() if k not in refused}
    for part, value in parts.items():
        data[part] = deep_merge(data.get(part) or {}, value)
    data.pop("environments", None)
    try:
        merged = runtime.document.model_validate(data)
    except ValidationError as exc:
        return None, [
            *refused.values(),
            *(
                _diagnostic(path, document, runtime.document, err, environment=env)
                for err in exc.errors()
            ),
        ]
    if refused:
        return None, list(refused.values())
    # What the base already breaks is reported once, for the base, not per environment.
    problems = [p for p in _problems(runtime, merged, config) if p not in base_problems]
    return merged, [_located(path, document, p, env) for p in problems]


def _not_overridable(
    path: str, document: Document, runtime: Runtime[Any], env: str, spec: Any
) -> dict[str, Diagnostic]:
    """`spec` fields that name or shape the endpoint stay the same in every environment."""
    if not isinstance(spec, dict):
        return {}  # not a mapping: the merged validation says so, at the override
    known = _fields_at(runtime.document, ("spec",))
    allowed = runtime.spec_overrides
    out = {}
    for key in spec:
        if key in known and key not in allowed:
            where = ("environments", env, "spec", key)
            line, col = document.position(where, key=True)
            message = (
                f"spec.{key} cannot differ between environments (environment {env}); "
                f"an environment may override: {', '.join(allowed) or 'nothing'}"
            )
            out[key] = Diagnostic(path, line, col, format_path(where), message)
    return out


def _problems(runtime: Runtime[Any], doc: AnySpecDocument, config: Config) -> list[Problem]:
    return [
        *runtime.spec_problems(doc, config),
        *_policy_problems(runtime, doc, config),
        *_credential_problems(doc),
    ]


def _credential_problems(doc: AnySpecDocument) -> Iterable[Problem]:
    envs = getattr(doc.serve, "envs", None) or {}
    for name, value in envs.items():
        message = credential_name_problem(name, value)
        if message:
            yield Problem(("serve", "envs", name), message)
    for index, arg in enumerate(getattr(doc.serve, "args", None) or ()):
        message = arg_credential_problem(arg)
        if message:
            yield Problem(("serve", "args", index), message)


def _policy_problems(
    runtime: Runtime[Any], doc: AnySpecDocument, config: Config
) -> Iterable[Problem]:
    facts = runtime.facts(doc, config)
    prefixes = config.policy.allowed_image_prefixes
    for image in facts.images:
        if prefixes and not image.startswith(tuple(prefixes)):
            yield Problem(
                ("spec", "image"),
                f"image {image!r} is not allowed by policy (allowed prefixes: "
                f"{', '.join(prefixes)})",
            )
    limit = config.policy.max_gpus_per_model
    if limit is not None and facts.gpus_per_replica > limit:
        yield Problem(
            ("serve", "resources", "gpu"),
            f"{facts.gpus_per_replica} GPUs exceed the policy limit of {limit} per model",
        )


def _check_environment_names(
    path: str, document: Document, base: AnySpecDocument, config: Config
) -> list[Diagnostic]:
    out = []
    for env in base.environments:
        if env not in config.environments:
            line, col = document.position(("environments", env), key=True)
            declared = ", ".join(config.environments)
            hint = _did_you_mean(env, list(config.environments))
            message = f"environment {env!r} is not declared in servegen.yaml{hint}"
            message += f" (declared: {declared})"
            out.append(Diagnostic(path, line, col, f"environments.{env}", message))
    return out


# --- across files ---------------------------------------------------------------------


@dataclass(frozen=True)
class SpecName:
    """Where a valid spec's name is written: all the unique-name rule needs of it."""

    name: str
    path: str
    line: int
    col: int

    @classmethod
    def of(cls, spec: ValidatedSpec) -> SpecName:
        return cls(spec.name, spec.path, *spec.document.position(("name",)))


def check_repository(specs: Sequence[ValidatedSpec]) -> list[Diagnostic]:
    """Rules that need every spec at once: unique names."""
    return duplicate_names([SpecName.of(spec) for spec in specs])


def duplicate_names(names: Sequence[SpecName]) -> list[Diagnostic]:
    """Each spec whose name an earlier one already has, and that earlier one."""
    first: dict[str, SpecName] = {}
    out = []
    for spec in names:
        other = first.setdefault(spec.name, spec)
        if other is spec:
            continue
        line, col = spec.line, spec.col
        oline, ocol = other.line, other.col
        out.append(
            Diagnostic(
                spec.path,
                line,
                col,
                "name",
                f"duplicate name {spec.name!r}: also defined at {other.path}:{oline}:{ocol}",
            )
        )
        out.append(
            Diagnostic(
                other.path,
                oline,
                ocol,
                "name",
                f"duplicate name {spec.name!r}: also defined at {spec.path}:{line}:{col}",
            )
        )
    return out


# --- pydantic errors -> positioned diagnostics ----------------------------------------


def _located(
    path: str, document: Document, problem: Problem, environment: str | None
) -> Diagnostic:
    """Position a problem; in an environment, prefer the override that caused it."""
    where = _where(document, problem.path, environment)
    message = problem.message
    if environment is not None:
        message = f"{message} (environment {environment})"
    line, col = document.position(where)
    return Diagnostic(path, line, col, format_path(where), message, problem.severity)


def _where(document: Document, loc: JsonPath, environment: str | None) -> JsonPath:
    """In an environment, point at the override that caused a problem when it exists."""
    if environment is not None and loc and loc[0] in OVERRIDABLE:
        in_override = ("environments", environment, *loc)
        if document.has(in_override):
            return in_override
    return loc


def _diagnostic(
    path: str,
    document: Document,
    model: type[BaseModel],
    error: ErrorDetails,
    environment: str | None = None,
) -> Diagnostic:
    loc: JsonPath = tuple(error["loc"])
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    invalid_key = bool(loc) and loc[-1] == "[key]"
    at_key = invalid_key  # an invalid mapping key: point at the key itself
    if invalid_key:
        loc = loc[:-1]
    if kind == "extra_forbidden":
        at_key = True
        message = _unknown_field_message(model, loc)
    elif kind == "missing":
        message = f"missing required field {loc[-1]!r}"
    elif kind in ("string_pattern_mismatch", "literal_error", "enum"):
        message = _explain_value(model, loc, error, message)
    elif kind in _WRONG_TYPE:
        message += _what_was_found(error.get("input"))
    if invalid_key:
        message = f"invalid key {loc[-1]!r}: {message}"
    where = _where(document, loc, environment)
    if environment is not None:
        message = f"{message} (environment {environment})"
    if kind == "missing":
        line, col = document.position(where[:-1])
    else:
        line, col = document.position(where, key=at_key)
    return Diagnostic(path, line, col, format_path(where), message)


# pydantic's strict type errors, which say what was expected but not what was found.
_WRONG_TYPE = frozenset(
    {
        "int_type",
        "float_type",
        "bool_type",
        "string_type",
        "dict_type",
        "list_type",
        "int_from_float",
    }
)
# Words YAML 1.1 read as booleans, and YAML 1.2 (servegen's, and editors') reads as text.
_YAML_11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})


def _what_was_found(found: object) -> str:
    """`: found the string '2'`, with a hint where YAML 1.1 habits explain it."""
    if isinstance(found, bool):
        text = f"; found {str(found).lower()}"
    elif isinstance(found, str):
        text = f"; found the string {cut(repr(found))}"
        if found.lower() in _YAML_11_BOOLEANS:
            text += " (YAML 1.2 reads it as text: write true or false)"
    elif isinstance(found, int | float):
        text = f"; found the number {found!r}"
    elif isinstance(found, dict):
        text = "; found a mapping"
    elif isinstance(found, list):
        text = "; found a list"
    elif found is None:
        text = "; found null (an empty value)"
    else:
        return ""
    return text


def _explain_value(model: type[BaseModel], loc: JsonPath, error: ErrorDetails, message: str) -> str:
    got = error.get("input")
    info = _field_at(model, loc)
    expected = (error.get("ctx") or {}).get("expected")
    if error["type"] == "literal_error" and isinstance(got, str) and expected:
        options = [o.strip(" '") for o in str(expected).replace(" or ", ",").split(",")]
        return f"{cut(repr(got))} is not one of {expected}{_did_you_mean(got, options)}"
    if error["type"] == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        shown = cut(repr(redacted(got) if isinstance(got, str) else got))
        if pattern in PATTERN_HELP:
            return f"{shown} {PATTERN_HELP[pattern]}"
        description = info.description if info is not None else None
        if description:
            return f"{shown} is not valid: {description}"
        return f"{shown} does not match {pattern}"
    return message


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    by_lower = {option.lower(): option for option in options}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[match[0]]!r}?)" if match else ""


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types an annotation may hold (Annotated/Optional/unions removed)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in get_args(annotation) for t in _unwrap(arg) if t is not type(None)]
    return [annotation]


def _step(annotation: Any, step: str | int) -> tuple[Any, FieldInfo | None] | None:
    for candidate in _unwrap(annotation):
        origin = get_origin(candidate)
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            info = candidate.model_fields.get(str(step))
            if info is not None:
                return info.annotation, info
        elif origin in (list, tuple) and isinstance(step, int):
            return get_args(candidate)[0], None
        elif origin is dict and isinstance(step, str):
            return get_args(candidate)[1], None
    return None


def _field_at(model: type[BaseModel], loc: JsonPath) -> FieldInfo | None:
    annotation: Any = model
    info: FieldInfo | None = None
    for step in loc:
        found = _step(annotation, step)
        if found is None:
            return None
        annotation, info = found
    return info


def _model_at(model: type[BaseModel], loc: JsonPath) -> type[BaseModel] | None:
    annotation: Any = model
    for step in loc:
        found = _step(annotation, step)
        if found is None:
            return None
        annotation = found[0]
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _fields_at(model: type[BaseModel], loc: JsonPath) -> list[str]:
    found = _model_at(model, loc)
    return list(found.model_fields) if found is not None else []


def _unknown_field_message(model: type[BaseModel], loc: JsonPath) -> str:
    """`unknown field`, with the model's own word on a field it names differently
    (`renamed_fields`), else a did-you-mean; then the allowed fields."""
    owner = _model_at(model, loc[:-1])
    allowed = list(owner.model_fields) if owner is not None else []
    renamed: dict[str, str] = getattr(owner, "renamed_fields", {})
    field = str(loc[-1])
    hint = f": {renamed[field]}" if field in renamed else _did_you_mean(field, allowed)
    message = f"unknown field {field!r}{hint}"
    return message + (f"; allowed: {', '.join(allowed)}" if allowed else "")


def _not_a_mapping(path: str, document: Document, what: str) -> Diagnostic:
    line, col = document.position(())
    got = type(document.data).__name__
    names = {"list": "a list", "str": "a string", "int": "a number", "float": "a number"}
    return Diagnostic(path, line, col, "", f"{what} must be a mapping, got {names.get(got, got)}")
