"""What is wrong with a rendered object, worded for someone reading a manifest.

`ObjectProblem` is one finding, from a schema (generator/check.py) or from kubeconform
(generator/kubeconform.py); `schema_problems` turns a JSON Schema validator's errors into
(path, message) pairs, explaining patterns in generator/k8sformats.py's words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from generator.errors import cut
from generator.k8sformats import HELP_BY_PATTERN
from generator.yamlio import format_path


@dataclass(frozen=True)
class ObjectProblem:
    """One thing the API server would reject in one object; `path` like `spec.replicas`."""

    api_version: str
    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.api_version}/{self.kind} {self.name or '<unnamed>'}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def schema_problems(
    validator: jsonschema_rs.Validator, obj: Any, *, retried: bool = False
) -> list[tuple[str, str]]:
    """(path, message) for everything `validator` finds wrong with `obj`, deduplicated."""
    try:
        # The common case, and much cheaper than collecting errors.
        if validator.is_valid(obj):
            return []
        errors = list(validator.iter_errors(obj))
    except ValueError as exc:
        # jsonschema_rs takes only dicts as objects; any other Mapping gets one retry as
        # dicts. What still fails holds a value JSON cannot, such as a datetime.
        if not retried:
            return schema_problems(validator, _as_dicts(obj), retried=True)
        return [("", f"not representable as JSON: {exc}")]
    found: dict[tuple[str, str], None] = {}
    for error in errors:
        for parts, message in _describe(error):
            found[(format_path(parts), message)] = None
    return list(found)


def _as_dicts(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _as_dicts(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_dicts(item) for item in value]
    return value


# bool before int: in Python a bool is an int, in JSON it is not.
_JSON_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (Mapping, "object"),
    (list, "array"),
    (type(None), "null"),
)


def _json_type(value: Any) -> str:
    return next(
        (name for t, name in _JSON_TYPE_NAMES if isinstance(value, t)), type(value).__name__
    )


def short(value: Any) -> str:
    """`value` as JSON, cut to 60 characters."""
    return cut(json.dumps(value, default=str))


def _describe(error: jsonschema_rs.ValidationError) -> Iterator[tuple[list[str | int], str]]:
    """(path, message) pairs for one error."""
    kind, path = error.kind, list(error.instance_path)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        for field in kind.unexpected:
            yield [*path, field], f'unknown field "{field}"'
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        yield [*path, kind.property], "required field is missing"
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Type):
        yield path, _type_message([kind.types], error.instance)
    elif isinstance(
        kind,
        (jsonschema_rs.ValidationErrorKind.AnyOf, jsonschema_rs.ValidationErrorKind.OneOfNotValid),
    ):
        yield path, _alternatives_message(error)
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.PropertyNames):
        key = str(kind.error.instance)
        yield [*path, key], f"key {_message(kind.error)}"
    else:
        yield path, _message(error)


_MAX_CHOICES = 20


def _message(error: jsonschema_rs.ValidationError) -> str:
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Pattern):
        meaning = HELP_BY_PATTERN.get(kind.pattern)
        if meaning:
            return f"{short(error.instance)} {meaning}"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        # jsonschema_rs abbreviates long lists ("or 2 other candidates"); users need the
        # choices, up to a line's worth (a CRD may list thousands).
        options = list(kind.options)
        allowed = ", ".join(short(option) for option in options[:_MAX_CHOICES])
        more = len(options) - _MAX_CHOICES
        allowed += f" and {more} more" if more > 0 else ""
        return f"{short(error.instance)} is not one of: {allowed}"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Maximum):
        return f"{short(error.instance)} is greater than the maximum of {kind.limit}"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Minimum):
        return f"{short(error.instance)} is less than the minimum of {kind.limit}"
    return error.message


def _type_message(alternatives: list[list[str]], value: Any) -> str:
    wanted = [t for types in alternatives for t in types if t != "null"]
    unique = list(dict.fromkeys(wanted)) or ["null"]
    return f"must be {' or '.join(unique)}, not {_json_type(value)} ({short(value)})"


def _alternatives_message(error: jsonschema_rs.ValidationError) -> str:
    branches = getattr(error.kind, "context", [])
    types: list[list[str]] = []
    for branch in branches:
        for sub in branch:
            if not isinstance(sub.kind, jsonschema_rs.ValidationErrorKind.Type):
                return error.message
            types.append(list(sub.kind.types))
    return _type_message(types, error.instance) if types else error.message
