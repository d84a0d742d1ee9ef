"""Reusable field types for user input: Kubernetes names, labels, quantities, env vars.

Every type carries a description so it reaches the JSON Schema and editor tooltips.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from generator.errors import cut, printable
from generator.k8sformats import (
    ANNOTATIONS_TOTAL_MAX,
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ENV_VAR_NAME,
    HELP_BY_PATTERN,
    INT32_MAX,
    INT64_MAX,
    LABEL_VALUE,
    QUANTITY,
    qualified_name_problem,
    qualified_name_schema,
    rule_schema,
)


class StrictModel(BaseModel):
    """Base for everything a user writes: unknown keys are errors, nothing is coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False, strict=True)


# The rules themselves, and how a mismatch is explained, live in generator/k8sformats.py.
PATTERN_HELP = HELP_BY_PATTERN

# A count or a duration that a template writes into a Kubernetes integer field, bounded
# by that field's Go type: a value no cluster can hold is refused at its own line, once,
# rather than in each rendered object of each environment.
Int32 = Annotated[int, Field(le=INT32_MAX)]
Int64 = Annotated[int, Field(le=INT64_MAX)]

DnsLabel = Annotated[
    str,
    StringConstraints(pattern=DNS1123_LABEL.pattern, max_length=DNS1123_LABEL.max_length),
    Field(description="A DNS-1123 label: lower-case letters, digits and '-', at most 63."),
]
Dns1035Label = Annotated[
    str,
    StringConstraints(pattern=DNS1035_LABEL.pattern, max_length=DNS1035_LABEL.max_length),
    Field(description="A DNS-1035 label (a Service name): a DNS-1123 label led by a letter."),
]
DnsSubdomain = Annotated[
    str,
    StringConstraints(pattern=DNS1123_SUBDOMAIN.pattern, max_length=DNS1123_SUBDOMAIN.max_length),
    Field(description="A DNS-1123 subdomain, e.g. the name of a Kubernetes Secret."),
]


def _quantity(value: Any) -> Any:
    # YAML reads `cpu: 2` as an int and `cpu: 0.5` as a float; Kubernetes wants strings.
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        # YAML reads `1e999` as infinity: say what was written, not 'inf'.
        raise ValueError("a number too large to be a quantity")
    if isinstance(value, int | float):
        return format(value, "g") if isinstance(value, float) else str(value)
    return value


def _quantity_schema(schema: dict[str, Any]) -> None:
    # A number is accepted too (and written as the string Kubernetes wants): editors
    # must not mark `cpu: 2` as an error.
    schema["type"] = ["string", "number"]
    # The before-validator puts the string constraints in a later step of pydantic's
    # chain, which its JSON Schema leaves out: stated here, as validate applies them (the
    # pattern judges strings, `minimum` numbers: `-1` is written "-1", which it refuses).
    schema["pattern"] = QUANTITY.pattern
    schema["minimum"] = 0


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    StringConstraints(pattern=QUANTITY.pattern, max_length=QUANTITY.max_length),
    Field(
        description="A Kubernetes quantity, e.g. 500m, 2, 16Gi.",
        examples=["16Gi"],
        json_schema_extra=_quantity_schema,
    ),
]


def _qualified_key(key: str, what: str) -> str:
    problem = qualified_name_problem(key)
    if problem:
        raise ValueError(f"{what} {key!r} {problem}")
    return key


def _label_key(key: str) -> str:
    return _qualified_key(key, "label key")


def _label_value(value: str) -> str:
    if not LABEL_VALUE.matches(value):
        raise ValueError(f"label value {value!r} {LABEL_VALUE.help}")
    return value


def _qualified_name_schema(schema: dict[str, Any]) -> None:
    # The validators above are Python code, which pydantic's JSON Schema cannot see: the
    # rule they apply is stated for editors here.
    schema.update(qualified_name_schema())


def _label_value_schema(schema: dict[str, Any]) -> None:
    schema.update(rule_schema(LABEL_VALUE))


QualifiedKey = Annotated[str, Field(json_schema_extra=_qualified_name_schema)]
LabelKey = Annotated[QualifiedKey, AfterValidator(_label_key)]
LabelValue = Annotated[
    str, AfterValidator(_label_value), Field(json_schema_extra=_label_value_schema)
]


# --- control characters -----------------------------------------------------------------
# Engines read args, env values, images and toleration fields as one line; a control
# character there is refused by the runtime or breaks `kubectl kustomize` for a whole
# environment. Multi-line text (file contents, annotation values) keeps tab and newline.

# As regular-expression ranges, which Python, pydantic (Rust) and editors (ECMAScript)
# read alike. Lone surrogates are refused too, but only by Python: an editor's regex
# without the `u` flag sees every character beyond U+FFFF as two surrogates, so the
# JSON Schema leaves them out rather than mark an emoji.
_LINE_CONTROLS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_TEXT_CONTROLS = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
_SURROGATES = r"\ud800-\udfff"
_LINE_FORBIDDEN = re.compile(f"[{_LINE_CONTROLS}{_SURROGATES}]")
_TEXT_FORBIDDEN = re.compile(f"[{_TEXT_CONTROLS}{_SURROGATES}]")
LINE_PATTERN = f"^[^{_LINE_CONTROLS}]*$"


def _refuse(pattern: re.Pattern[str], value: str, what: str) -> str:
    found = pattern.search(value)
    if found:
        char = printable(found.group()) if found.group() != "\n" else "a newline"
        raise ValueError(f"contains {char} at character {found.start() + 1}: {what}")
    return value


def single_line(value: str) -> str:
    return _refuse(_LINE_FORBIDDEN, value, "control and line-break characters are not allowed")


def plain_text(value: str) -> str:
    return _refuse(
        _TEXT_FORBIDDEN, value, "control characters other than tab and newline are not allowed"
    )


Line = Annotated[
    str, AfterValidator(single_line), Field(json_schema_extra={"pattern": LINE_PATTERN})
]
Text = Annotated[
    str, AfterValidator(plain_text), Field(json_schema_extra={"pattern": f"^[^{_TEXT_CONTROLS}]*$"})
]

# Go YAML (kustomize's kyaml) reads these unquoted words as null, booleans, numbers or
# timestamps, and kustomize writes map keys back unquoted after patching: such an
# annotation key becomes a non-string key and the build fails (kubectl 1.3x kustomize).
_GO_YAML_NOT_STRING = re.compile(
    r"(?i:~|null|true|false|yes|no|on|off|y|n)"
    r"|[-+]?(0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)"
    r"|[-+]?(\.[0-9_]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?i:inf)|\.(?i:nan)"
    r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?"
)


# kubectl's client-side apply record; diffs leave it out as server noise.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _annotation_key(key: str) -> str:
    # Annotation keys follow the same qualified-name rule as label keys (kubernetes
    # apimachinery pkg/api/validation/objectmeta.go: ValidateAnnotations, IsQualifiedName).
    _qualified_key(key, "annotation key")
    if key == LAST_APPLIED:
        raise ValueError(
            f"{key} is kubectl's own record of what it applied: servegen does not write it "
            "(and its diff does not show it)"
        )
    if _GO_YAML_NOT_STRING.fullmatch(key):
        raise ValueError(
            f"annotation key {key!r} would be read back as a number, boolean, null or date "
            "by kustomize; use a prefixed name such as example.com/" + key
        )
    return key


Labels = Annotated[
    dict[LabelKey, LabelValue],
    Field(description="Kubernetes labels: keys `[prefix/]name`, values of at most 63 characters."),
]


def _annotations_size(annotations: dict[str, str]) -> dict[str, str]:
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_TOTAL_MAX:
        raise ValueError(
            f"annotations take {size:,} bytes; an object's may take at most "
            f"{ANNOTATIONS_TOTAL_MAX:,} (256 KiB), keys and values together"
        )
    return annotations


Annotations = Annotated[
    dict[Annotated[QualifiedKey, AfterValidator(_annotation_key)], Text],
    AfterValidator(_annotations_size),
    Field(description="Kubernetes annotations added to every object."),
]


# --- plaintext secrets -----------------------------------------------------------------

_CREDENTIAL_PATTERNS = (
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "a Hugging Face token"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}"), "a GitHub token"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "an API key"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
)
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY)", re.I)
_TOKEN_LIKE = re.compile(r"^[A-Za-z0-9+/=_\-.]{32,}$")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def credential_pattern(value: str) -> str | None:
    """Name the kind of credential `value` holds by a known pattern, or None."""
    for pattern, kind in _CREDENTIAL_PATTERNS:
        if pattern.search(value):
            return kind
    return None


def credential_kind(value: str) -> str | None:
    """Name the kind of credential `value` looks like, or None."""
    kind = credential_pattern(value)
    if kind:
        return kind
    if _TOKEN_LIKE.fullmatch(value) and "/" not in value.strip("/") and _entropy(value) > 4.0:
        classes = sum(
            any(test(c) for c in value) for test in (str.islower, str.isupper, str.isdigit)
        )
        if classes == 3:
            return "a long random token"
    return None


_USE_SECRETS = (
    "never put credentials in specs; create a Kubernetes Secret and list its name under `secrets`"
)


def reject_credential(value: str) -> str:
    """Refuse a plain string that looks like a credential (used for env values and args)."""
    kind = credential_kind(value)
    if kind:
        raise ValueError(f"value looks like {kind}: {_USE_SECRETS}")
    return value


# A Hugging Face repository id, [namespace/]name, in the characters huggingface_hub's
# validate_repo_id (utils/_validators.py) accepts: no ':' and no further '/'. Engines
# and loaders take an hf:// reference as such an id and the Hub refuses anything else.
HF_REPO_ID = r"([A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*"


def hf_repo_problem(url: str) -> str | None:
    """What keeps `hf://<id>[@revision]` from naming a repository id, or None."""
    repo = url.removeprefix("hf://").partition("?")[0].partition("@")[0]
    if re.fullmatch(HF_REPO_ID, repo):
        return None
    return (
        f"{cut(repo)!r} is not a Hugging Face repository id ([org/]name of letters, "
        "digits, '.', '_' and '-'; a revision is written @rev)"
    )


def hf_repo_schema(schema: dict[str, Any]) -> None:
    """hf_repo_problem's rule, for editors, on a URL field it judges: an hf:// URL names a
    repository id up to its first '?' or '@'. Other schemes are the field's to judge."""
    schema["anyOf"] = [{"not": {"pattern": "^hf://"}}, {"pattern": rf"^hf://{HF_REPO_ID}([?@]|$)"}]


def pvc_claim_problem(url: str) -> str | None:
    """Why a pvc:// URL cannot mount what it names. What precedes its first '/' (or '?')
    is the claimName mounted into the pod (kubeai v0.22.1
    internal/modelcontroller/model_source.go parseModelURL; kserve v0.20.0 ParsePvcURI;
    servegen's own vLLM Deployment), and a PersistentVolumeClaim's name is a
    DNS-1123 subdomain (k8s v1.33 ValidatePersistentVolumeClaimName): no claim of any
    other name can exist, so the pod would wait for it forever."""
    if not url.startswith("pvc://"):
        return None
    claim, *sub_path = url[len("pvc://") :].split("?", 1)[0].split("/")
    if not DNS1123_SUBDOMAIN.matches(claim):
        return (
            f"pvc:// claim {cut(claim)!r} {DNS1123_SUBDOMAIN.help}, at most "
            f"{DNS1123_SUBDOMAIN.max_length} characters: it names the PersistentVolumeClaim "
            "to mount"
        )
    # The rest is the volume's subPath, and the API server refuses one with a '..'
    # segment (k8s v1.33 validateLocalDescendingPath): the pod is never created.
    if {".", ".."} & set(sub_path):
        return "pvc:// sub-paths may not contain '.' or '..' segments: the pod could not mount it"
    return None


def credential_name_problem(name: str, value: str) -> str | None:
    """A plain value under a name that says it is a credential (`HF_TOKEN: ...`)."""
    if value and _SECRET_NAME.search(name) and not value.startswith("/"):
        return f"{name} looks like a credential by its name: {_USE_SECRETS}"
    return None


# A flag named for a credential by its last word: `--api-key`, `--hf-token`, `--password`,
# but not `--tokenizer`, `--max-num-batched-tokens`, vLLM's `--long-prefill-token-threshold`
# or KServe's `--return_token_type_ids` (the word names what the flag is about there).
_SECRET_FLAG = re.compile(r"(^|-)(token|secret|password|passwd|(api|access|private|secret)-key)$")


def arg_credential_problem(arg: str) -> str | None:
    """An engine argument that holds a credential: a known pattern anywhere in it, or a
    flag named for one (`--api-key=...`, `--hf-token`; its value may be the next arg).
    Long random values are left alone: model names and chat templates look like them."""
    kind = credential_pattern(arg)
    if kind:
        return f"value looks like {kind}: {_USE_SECRETS}"
    flag = arg.partition("=")[0]
    if flag.startswith("--") and _SECRET_FLAG.search(flag[2:].lower().replace("_", "-")):
        return f"{flag} takes a credential: {_USE_SECRETS}"
    return None


def _env_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


EnvName = Annotated[
    str, StringConstraints(pattern=ENV_VAR_NAME.pattern, max_length=ENV_VAR_NAME.max_length)
]
EnvValue = Annotated[
    str,
    BeforeValidator(_env_value),
    AfterValidator(reject_credential),  # first: the more useful message for a pasted key
    AfterValidator(single_line),
]


def _envs_from_list(value: Any) -> Any:
    # The SDK writes `envs: [{name, value}]`; the core reads a map. Accept both. Entries
    # become map items here, so their values are validated (and located) like a map's.
    if not isinstance(value, list):
        return value
    out: dict[Any, Any] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"envs[{index}] must be a mapping with a string `name`")
        unknown = sorted(set(item) - {"name", "value"})
        if unknown:
            raise ValueError(f"envs[{index}]: unknown field {unknown[0]!r} (allowed: name, value)")
        if item["name"] in out:
            raise ValueError(f"envs[{index}]: duplicate variable {item['name']!r}")
        out[item["name"]] = item.get("value", "")
    return out


def _envs_schema(schema: dict[str, Any]) -> None:
    """Document both accepted forms (map, or list of {name, value}) in the JSON Schema."""
    scalar = {
        "type": ["string", "number", "boolean"],
        "pattern": LINE_PATTERN,  # EnvValue's single_line; a pattern judges strings only
        "description": "Plain value.",
    }
    as_map = {
        "type": "object",
        "propertyNames": {"pattern": ENV_VAR_NAME.pattern, "maxLength": ENV_VAR_NAME.max_length},
        "additionalProperties": scalar,
    }
    as_list = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "pattern": ENV_VAR_NAME.pattern,
                    "maxLength": ENV_VAR_NAME.max_length,
                    "description": "Name.",
                },
                "value": scalar,
            },
            "required": ["name"],
            "additionalProperties": False,
        },
    }
    for key in ("type", "additionalProperties", "propertyNames", "patternProperties"):
        schema.pop(key, None)
    schema["anyOf"] = [as_map, as_list]


Envs = Annotated[
    dict[EnvName, EnvValue],
    BeforeValidator(_envs_from_list),
    Field(
        description=(
            "Plain environment variables: a map, or a list of {name, value}. Credentials "
            "are refused: reference Secrets with `secrets` instead."
        ),
        json_schema_extra=lambda schema: _envs_schema(schema),
    ),
]

SecretNames = Annotated[
    list[DnsSubdomain],
    Field(
        description=(
            "Names of existing Kubernetes Secrets in the target namespace; every key "
            "becomes an environment variable (envFrom). Values never appear in specs."
        ),
    ),
]


def _taint_key(key: str) -> str:
    return _qualified_key(key, "taint key") if key else key


def _toleration_schema(schema: dict[str, Any]) -> None:
    """Toleration's validators, said to editors. Each rule holds for every toleration
    validate accepts: a field that breaks its own rule is refused before any check that
    reads it, so the cross-field rules below never meet an invalid field."""
    properties = schema["properties"]
    key, value = (properties[name]["anyOf"][0] for name in ("key", "value"))
    key["anyOf"] = [{"const": ""}, qualified_name_schema()]
    value["allOf"] = [rule_schema(LABEL_VALUE)]  # Exists wants it empty, which is one
    operator = {"const": "Exists", "description": "Exists: any value of the key's taints."}
    exists = {"properties": {"operator": operator}, "required": ["operator"]}
    named = {"type": "string", "minLength": 1, "description": "Without a key: Exists only."}
    with_key = {"properties": {"key": named}, "required": ["key"]}
    empty = {"enum": ["", None], "description": "Empty when `operator` is Exists."}
    empty_value = {"properties": {"value": empty}}
    set_seconds = {"type": "integer", "description": "Set: `effect` must be NoExecute."}
    seconds = {"properties": {"toleration_seconds": set_seconds}}
    effect = {"const": "NoExecute", "description": "`toleration_seconds` needs NoExecute."}
    no_execute = {"properties": {"effect": effect}, "required": ["effect"]}
    schema["allOf"] = [
        {"anyOf": [with_key, exists]},  # _exists_without_key
        {"if": exists, "then": empty_value},  # _value_for_operator
        {"if": {**seconds, "required": ["toleration_seconds"]}, "then": no_execute},
    ]


# The API server's rules for a toleration (k8s v1.33 pkg/apis/core/validation/validation.go,
# ValidateTolerations) hold here, at the field that breaks them: a pod with a toleration
# that breaks one is never created.
class Toleration(StrictModel):
    """A Kubernetes toleration, in the spec's snake_case."""

    model_config = ConfigDict(json_schema_extra=_toleration_schema)

    key: Annotated[Line, AfterValidator(_taint_key)] | None = Field(
        default=None, description="Taint key; empty with Exists matches all."
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", validate_default=True, description="Exists or Equal."
    )
    value: Line | None = Field(default=None, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: Int64 | None = Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays bound."
    )

    # Each check reads only fields declared before its own, and only when they passed
    # (info.data holds the valid ones): one mistake is one message.
    @field_validator("operator")
    @classmethod
    def _exists_without_key(cls, operator: str, info: ValidationInfo) -> str:
        if "key" in info.data and not info.data["key"] and operator != "Exists":
            raise ValueError("must be Exists when `key` is empty (which tolerates every taint)")
        return operator

    @field_validator("value")
    @classmethod
    def _value_for_operator(cls, value: str | None, info: ValidationInfo) -> str | None:
        operator = info.data.get("operator")
        if operator == "Exists" and value:
            raise ValueError("must be empty when `operator` is Exists")
        if operator == "Equal" and value is not None and not LABEL_VALUE.matches(value):
            raise ValueError(f"taint value {cut(value)!r} {LABEL_VALUE.help}")
        return value

    @field_validator("toleration_seconds")
    @classmethod
    def _seconds_for_no_execute(cls, seconds: int | None, info: ValidationInfo) -> int | None:
        if seconds is not None and "effect" in info.data and info.data["effect"] != "NoExecute":
            raise ValueError("only applies with `effect: NoExecute`")
        return seconds

    def to_kubernetes(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operator": self.operator}
        if self.key is not None:
            out["key"] = self.key
        if self.value is not None:
            out["value"] = self.value
        if self.effect is not None:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


class Resources(StrictModel):
    """Compute resources, with the seed platform's names."""

    cpu: Quantity | None = Field(default=None, description="CPU request, e.g. 2 or 500m.")
    mem: Quantity | None = Field(default=None, description="Memory request and limit, e.g. 16Gi.")
    gpu: Annotated[int, Field(ge=0, le=64)] | None = Field(
        default=None, description="Number of GPUs (nvidia.com/gpu), request and limit."
    )
    disk: Quantity | None = Field(
        default=None, description="Size of the model cache volume, e.g. 50Gi."
    )
