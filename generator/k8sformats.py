"""Kubernetes' own string rules: object names, label and annotation keys, label values,
environment variable names and resource quantities; and the bounds of its integer
types. One rule, one wording.

The spec's field types (generator/fields.py), the schemas rendered objects are checked
against (generator/k8sschemas.py, generator/crdschemas.py), the messages for a value that
breaks a rule (generator/validate.py, generator/check.py) and the runtimes' arithmetic on
quantities all take them from here. Only `re` and `decimal` are imported: this module is
on the start-up path of every command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = [
    "ANNOTATIONS_TOTAL_MAX",
    "DNS1035_LABEL",
    "DNS1123_LABEL",
    "DNS1123_SUBDOMAIN",
    "ENV_VAR_NAME",
    "HELP_BY_PATTERN",
    "INT32_MAX",
    "INT64_MAX",
    "LABEL_VALUE",
    "PATH_SEGMENT",
    "QUALIFIED_NAME",
    "QUANTITY",
    "Rule",
    "name_rule",
    "parse_quantity",
    "qualified_name_problem",
    "qualified_name_schema",
    "rule_schema",
]


@dataclass(frozen=True)
class Rule:
    """A regular expression with a length limit, and what to tell someone who breaks it."""

    pattern: str  # as JSON Schema and pydantic spell it (anchored with ^ and $)
    max_length: int
    help: str  # "must be ...", to follow the offending value
    compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", re.compile(self.pattern))

    def matches(self, value: str) -> bool:
        # fullmatch: Python's `$` also matches before a final newline, which the API
        # server's Go regexp (and pydantic's Rust one) refuses.
        return len(value) <= self.max_length and self.compiled.fullmatch(value) is not None


# k8s.io/apimachinery v0.33 pkg/util/validation/validation.go: dns1123LabelFmt, at most 63.
DNS1123_LABEL = Rule(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    63,
    "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
    "with a letter or digit",
)
# same file: dns1123SubdomainFmt, at most 253.
DNS1123_SUBDOMAIN = Rule(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    253,
    "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and "
    "ending with a letter or digit",
)
# same file: dns1035LabelFmt (Service names), at most 63.
DNS1035_LABEL = Rule(
    r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
    63,
    "must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter "
    "and ending with a letter or digit",
)
# k8s.io/apimachinery v0.33 pkg/api/validation/path/name.go: IsValidPathSegmentName, which
# every object name must pass (RBAC names may contain ':', for instance).
PATH_SEGMENT = Rule(
    r"^(?!\.{1,2}$)[^/%]+$", 253, "must not contain '/' or '%' and must not be '.' or '..'"
)
# validation.go: IsQualifiedName (label and annotation keys): an optional DNS-1123
# subdomain prefix of at most 253 characters and '/', then a name of at most 63.
QUALIFIED_NAME = Rule(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    253 + 1 + 63,
    "must be a qualified name: an optional DNS subdomain prefix and '/', then 1-63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
)
# validation.go: IsValidLabelValue, at most 63, may be empty.
LABEL_VALUE = Rule(
    r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
    63,
    "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
    "letter or digit (or empty)",
)
# validation.go: IsEnvVarName, envVarNameFmt then hasChDirPrefix (not '.', not starting
# with '..'), as clusters before 1.32 apply it (RelaxedEnvironmentVariableValidation, on
# by default from 1.32, accepts more); servegen caps the length.
ENV_VAR_NAME = Rule(
    r"^([-_a-zA-Z]|\.[-_a-zA-Z0-9])[-._a-zA-Z0-9]*$",  # no look-ahead: pydantic's regex
    256,
    "must be a variable name: letters, digits, '_', '-' and '.', not starting with a digit "
    "or '..', and not '.'",
)
# k8s.io/apimachinery v0.33 pkg/api/resource/quantity.go: a number with an optional binary
# (Ki..Ei), decimal (m, k, M..E) or exponent suffix. Signs and the n/u suffixes, which the
# API server also reads, are not offered: no resource servegen writes uses them.
QUANTITY = Rule(
    r"^([+]?([0-9]+(\.[0-9]*)?|\.[0-9]+))(([KMGTPE]i)|[mkMGTPE]|[eE][+-]?[0-9]+)?$",
    64,
    "must be a Kubernetes quantity such as 500m, 2, 512Mi or 16Gi",
)

# k8s.io/apimachinery v0.33 pkg/api/validation/objectmeta.go ValidateAnnotationsSize: the
# keys and values of one object's annotations, in bytes, at most 256 KiB together.
ANNOTATIONS_TOTAL_MAX = 256 * 1024

# The Go integer types behind Kubernetes fields: a number beyond one cannot be decoded,
# by the API server for a built-in object (`spec.replicas` is an int32 in k8s.io/api
# v0.33 apps/v1 types.go) nor by a controller for its own (KubeAI v0.22.1
# api/k8s/v1/model_types.go: `MaxReplicas *int32`, `PrefixCharLength int`).
INT32_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1

RULES = (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    DNS1035_LABEL,
    PATH_SEGMENT,
    QUALIFIED_NAME,
    LABEL_VALUE,
    ENV_VAR_NAME,
    QUANTITY,
)
# What a schema's `pattern` means, for messages: raw regular expressions are unreadable.
HELP_BY_PATTERN = {rule.pattern: rule.help for rule in RULES}


# --------------------------------------------------------------------------- object names

# Kinds whose name is a DNS-1123 subdomain (their ValidateXName in k8s.io/kubernetes v1.33
# pkg/apis/*/validation uses NameIsDNSSubdomain). Service and Namespace have their own
# rule; every other kind gets only the path-segment rule.
_SUBDOMAIN_KINDS = frozenset(
    {
        "ConfigMap",
        "CronJob",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "IngressClass",
        "Job",
        "NetworkPolicy",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Pod",
        "PodDisruptionBudget",
        "PriorityClass",
        "ReplicaSet",
        "Secret",
        "ServiceAccount",
        "StatefulSet",
        "StorageClass",
    }
)
# pkg/apis/core/validation: ValidateServiceName (DNS-1035), ValidateNamespaceName (label).
_OWN_NAME_RULE = {"Service": DNS1035_LABEL, "Namespace": DNS1123_LABEL}


def name_rule(kind: str) -> Rule:
    """The rule `metadata.name` of a built-in `kind` follows."""
    if kind in _OWN_NAME_RULE:
        return _OWN_NAME_RULE[kind]
    return DNS1123_SUBDOMAIN if kind in _SUBDOMAIN_KINDS else PATH_SEGMENT


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a label or annotation key, or None."""
    prefix, _, _ = key.rpartition("/")
    if QUALIFIED_NAME.matches(key) and len(prefix) <= DNS1123_SUBDOMAIN.max_length:
        return None
    return QUALIFIED_NAME.help


# What precedes a qualified name's '/' is its prefix: at most 253 characters, which
# QUALIFIED_NAME's own length limit (prefix and name together) leaves unsaid.
_QUALIFIED_PREFIX_LENGTH = rf"^([^/]{{0,{DNS1123_SUBDOMAIN.max_length}}}/)?[^/]*$"


def rule_schema(rule: Rule) -> dict[str, object]:
    """The JSON Schema of the strings `rule.matches` accepts."""
    return {"type": "string", "pattern": rule.pattern, "maxLength": rule.max_length}


def qualified_name_schema() -> dict[str, object]:
    """The JSON Schema of a string qualified_name_problem accepts, exactly."""
    return {**rule_schema(QUALIFIED_NAME), "allOf": [{"pattern": _QUALIFIED_PREFIX_LENGTH}]}


# --------------------------------------------------------------------------- quantities

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"m": -1, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


# quantity.go ParseQuantity: a value that is not zero is rounded up to at least 1n, and
# a binary one is capped at 2^63-1 (maxAllowed). servegen computes with quantities in
# that range only, whatever the suffix: an exponent such as 1e999999999 is a number no
# resource can have, and exact arithmetic with it would not end (or overflow Decimal).
_SMALLEST = Decimal("1e-9")
_LARGEST = Decimal((1 << 63) - 1)


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity (`16Gi`, `500m`, `1e9`, `1024`), between 1n and 2^63-1
    unless zero; ValueError if it is none."""
    match = QUANTITY.compiled.fullmatch(text) if len(text) <= QUANTITY.max_length else None
    if match is None:
        raise ValueError(f"{text!r} is not a quantity")
    number, suffix = Decimal(match.group(1)), match.group(4) or ""  # QUANTITY's groups
    if not number:
        return Decimal(0)
    binary, exponent = 10 * _BINARY.get(suffix, 0), 0
    if suffix in _DECIMAL:
        exponent = 3 * _DECIMAL[suffix]
    elif suffix and not binary:
        exponent = int(suffix[1:])  # e or E, then the exponent
    magnitude = number.adjusted() + exponent  # the power of ten of the leading digit
    if magnitude > 19:
        return _LARGEST
    if magnitude < -10:
        return _SMALLEST
    return min(max(number.scaleb(exponent) * (1 << binary), _SMALLEST), _LARGEST)
