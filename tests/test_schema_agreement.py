"""The JSON Schemas and `servegen validate` agree: a spec or config that validate accepts
is never marked by an editor using the schemas, and what the schemas can say they say.

Documents are read with servegen's own YAML reader, as validate reads them, and checked
with jsonschema-rs, whose regular expressions are ECMAScript's, as an editor's are.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import schema
from generator.validate import validate_repository
from generator.yamlio import load_documents
from tests.conftest import EXAMPLES

SPEC = """\
kind: kubeai-text
name: tinyllama-chat
spec:
  url: hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0
"""
VLLM_SPEC = """\
kind: vllmserve-text
name: qwen-cpu
spec:
  url: hf://Qwen/Qwen2.5-0.5B-Instruct
serve:
  use_cpu_image: true
"""


@cache
def spec_validator() -> Any:
    return jsonschema_rs.Draft7Validator(schema.spec_schema())


@cache
def config_validator() -> Any:
    return jsonschema_rs.Draft7Validator(schema.config_schema())


def validate_spec(tmp_path: Path, text: str) -> list[str]:
    """validate's errors for one spec in the examples' repository config."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLES / "servegen.yaml", tmp_path / "servegen.yaml")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text(text)
    return [str(d) for d in validate_repository(tmp_path).diagnostics if d.severity == "error"]


def validate_config(tmp_path: Path, text: str) -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "servegen.yaml").write_text(text)
    (tmp_path / "specs").mkdir()
    return [str(d) for d in validate_repository(tmp_path).diagnostics if d.severity == "error"]


def schema_errors(validator: Any, text: str) -> list[str]:
    [document] = load_documents(text)
    return [error.message for error in validator.iter_errors(document.data)]


# --- what validate accepts, the schemas accept ---------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        "serve: {processors: two, scaling: {max_replicas: 4.5}}",
        "serve: {not_a_field_yet: 1}",
        "spec: {url: not-a-url, adapters: [{name: Bad_Name}]}",
        "spec: {model_name: renamed}",
        "serve: null",
    ],
)
def test_a_disabled_environment_override_is_not_judged_by_the_schema_either(
    override: str, tmp_path: Path
) -> None:
    """validate merges and judges an override only once its environment is enabled
    (README: "the fields inside a disabled environment's override are validated once it
    is enabled"); the schema must not mark it either."""
    text = SPEC + f"environments:\n  prod:\n    enabled: false\n    {override}\n"
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


@pytest.mark.parametrize("override", ["serve: []", "spec: a string", "serve: 3"])
def test_a_disabled_environment_override_is_still_a_mapping(override: str, tmp_path: Path) -> None:
    text = SPEC + f"environments:\n  prod:\n    enabled: false\n    {override}\n"
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


def test_an_enabled_environment_override_is_still_checked_by_the_schema() -> None:
    for enabled in ("", "    enabled: true\n"):
        text = SPEC + f"environments:\n  prod:\n{enabled}    serve: {{processors: two}}\n"
        assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize("value", ["0x 2", "0o+2", "0x0_2"])
def test_a_number_an_editor_reads_as_text_is_text_to_validate_too(
    value: str, tmp_path: Path
) -> None:
    """An editor's YAML 1.2 (core schema) reads `0x 2` as a string and marks
    `processors: 0x 2`; validate must not read it as the integer 2 and accept it."""
    text = SPEC + f"serve:\n  processors: {value}\n"
    assert validate_spec(tmp_path, text) != []


# --- patterns mean the same to pydantic and to an editor -----------------------------------


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return own + [
            p for key, value in node.items() if key != "pattern" for p in _patterns(value)
        ]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


def _dialect_dependent(pattern: str) -> list[str]:
    """Constructs whose meaning differs between pydantic's Rust regex (Unicode classes,
    `.` stops at '\\n' only) and ECMAScript (ASCII \\d and \\w, its own \\s, `.` stops at
    '\\r', U+2028 and U+2029 too)."""
    found, index, in_class = [], 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if pattern[index + 1] in "sSdDwWbB":
                found.append(pattern[index : index + 2])
            index += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "." and not in_class:
            found.append(".")
        index += 1
    return found


def test_no_schema_pattern_depends_on_the_regex_dialect() -> None:
    for document in (schema.spec_schema(), schema.config_schema()):
        for pattern in _patterns(document):
            assert _dialect_dependent(pattern) == [], pattern


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flux: {url: ", "https://example.com/a\\rb"),
        ("flux: {url: ", "https://example.com/a\\u2028b"),
        ("telemetry: {otlp_endpoint: ", "http://collector\\ufeff:4317"),
        ("telemetry: {otlp_endpoint: ", "http://collector\\x85:4317"),
        ("deploy: {committer: {name: ci, email: ", "ci\\ufeff@example.com"),
    ],
)
def test_validate_and_the_schema_agree_on_blanks_in_urls(
    field: str, value: str, tmp_path: Path
) -> None:
    text = f'{field}"{value}"{"}}" if "committer" in field else "}"}\n'
    refused_by_validate = validate_config(tmp_path, text) != []
    refused_by_schema = schema_errors(config_validator(), text) != []
    assert refused_by_validate and refused_by_schema


# --- what the schemas can say, they say ----------------------------------------------------


URL_PLACES = [
    "flux: {{url: '{}'}}\n",
    "telemetry: {{otlp_endpoint: '{}'}}\n",
    "kubeai: {{endpoint: '{}'}}\n",
    "environments: {{prod: {{kubeai: {{namespace: kubeai, endpoint: '{}'}}}}}}\n",
]


@pytest.mark.parametrize(
    "url",
    ["http://otel:431v7", "https://h:65536/x", "http://h:0", "https://", "http:///openai/v1",
     "https://bot:s3cret@h/x", "http://[::1/x", "http://a[::1]b/"],
)  # fmt: skip
@pytest.mark.parametrize("place", URL_PLACES)
def test_a_url_validate_refuses_is_marked_by_the_schema(
    url: str, place: str, tmp_path: Path
) -> None:
    text = place.format(url)
    assert validate_config(tmp_path, text) != []
    assert schema_errors(config_validator(), text) != []


@pytest.mark.parametrize(
    "url",
    ["http://h:4317", "https://h:65535/x", "http://[::1]:4318/v1/traces", "http://u@h/x",
     "http://h:/x", "https://github.com/org/sk-learn-examples-for-the-team"],
)  # fmt: skip
@pytest.mark.parametrize("place", URL_PLACES)
def test_a_url_validate_accepts_is_not_marked(url: str, place: str, tmp_path: Path) -> None:
    text = place.format(url)
    assert validate_config(tmp_path, text) == []
    assert schema_errors(config_validator(), text) == []


@pytest.mark.parametrize("value", ["2 cores", "16GB", "16gi", "-1", "''", "-2", "-0.5"])
def test_a_quantity_validate_refuses_is_marked_by_the_schema(value: str, tmp_path: Path) -> None:
    text = VLLM_SPEC + f"  resources: {{mem: 16Gi, cpu: {value}}}\n"
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize("value", ["16Gi", "500m", "2", "0.5", "1e3", "'1.5'", "+1"])
def test_a_quantity_validate_accepts_is_not_marked(value: str, tmp_path: Path) -> None:
    text = VLLM_SPEC + f"  resources: {{mem: 16Gi, cpu: {value}}}\n"
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


@pytest.mark.parametrize(
    "text",
    [
        "environments: {Prod: {}}",
        "environments: {prod: {}, zz_unknown: 1}",
        "profiles: {GPU: {resources: {gpu: 1}}}",
    ],
)
def test_a_config_key_validate_refuses_is_marked_by_the_schema(text: str, tmp_path: Path) -> None:
    assert validate_config(tmp_path, text + "\n") != []
    assert schema_errors(config_validator(), text + "\n") != []


@pytest.mark.parametrize(
    "text",
    [
        SPEC + "environments: {zz_unknown: 1}\n",
        VLLM_SPEC + "  envs: {" + "A" * 257 + ": x}\n",
        VLLM_SPEC + "  envs: [{name: " + "A" * 257 + ", value: x}]\n",
    ],
)
def test_a_spec_key_validate_refuses_is_marked_by_the_schema(text: str, tmp_path: Path) -> None:
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


def test_every_example_and_scaffold_document_matches_the_schemas() -> None:
    """What servegen ships as valid (examples/, the `init` scaffold) is never marked."""
    scaffold = Path(schema.__file__).parent / "scaffold"
    for path in [
        *sorted((EXAMPLES / "specs").rglob("*.yaml")),
        *sorted(scaffold.glob("specs/*.yaml")),
    ]:
        for document in load_documents(path.read_text()):
            errors = [e.message for e in spec_validator().iter_errors(document.data)]
            assert errors == [], path
    for path in (EXAMPLES / "servegen.yaml", scaffold / "servegen.yaml"):
        [document] = load_documents(path.read_text())
        assert [e.message for e in config_validator().iter_errors(document.data)] == [], path


# --- any document validate accepts, the schema accepts: examples mutated one field at a time


def _example_documents() -> list[Any]:
    found = []
    for path in sorted((EXAMPLES / "specs").rglob("*.yaml")):
        found += [json.loads(json.dumps(d.data)) for d in load_documents(path.read_text())]
    return found


EXAMPLE_DOCUMENTS = _example_documents()
# Values of every JSON type, and strings that are numbers, quantities, words or URLs.
REPLACEMENTS = st.sampled_from(
    ["", "x", "X Y", "abc-def", "-1", "1e3", "0", "16Gi", "500m", "hf://org/model", "on",
     "a.b", "UPPER", 0, 1, -1, 7, 2**31, 2**63, 1.5, 4.0, 0.5, True, False, None, [], ["x"],
     {}, {"a": "b"}]
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, dict | list):
            yield from _paths(value, (*prefix, key))


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    """An example spec with one field replaced, dropped or joined by an unknown key;
    maybe moved into an environment's override, enabled or not."""
    document = copy.deepcopy(draw(st.sampled_from(EXAMPLE_DOCUMENTS)))
    target = document
    if draw(st.booleans()):
        part = draw(st.sampled_from(["serve", "spec"]))
        override: dict[str, Any] = {part: copy.deepcopy(document.get(part) or {})}
        if draw(st.booleans()):
            override["enabled"] = False
        document["environments"] = {draw(st.sampled_from(["dev", "prod"])): override}
        target = override[part]
    paths = list(_paths(target))
    if not paths:
        return document
    *parents, last = draw(st.sampled_from(paths))
    holder = target
    for key in parents:
        holder = holder[key]
    how = draw(st.sampled_from(["replace", "drop", "unknown"]))
    if how == "replace":
        holder[last] = draw(REPLACEMENTS)
    elif how == "drop" and isinstance(holder, dict):
        del holder[last]
    elif isinstance(holder[last], dict):
        holder[last]["zz_unknown"] = "x"
    return document


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=mutated_specs())
def test_what_validate_accepts_the_schema_never_marks(document: Any, tmp_path: Path) -> None:
    text = json.dumps(document)  # JSON is YAML 1.2: no scalar reads differently
    folder = tmp_path / "repo"
    shutil.rmtree(folder, ignore_errors=True)
    if validate_spec(folder, text) == []:
        assert schema_errors(spec_validator(), text) == []


# --- labels, node selectors and annotations: qualified-name keys, label values ------------

LONG_PREFIX = "a" * 253
LABEL_PLACES = [
    SPEC + "labels: {{{}}}\n",
    VLLM_SPEC + "  node_selector: {{{}}}\n",
]


@pytest.mark.parametrize(
    "entry",
    ["'-a': x", f"'{'a' * 64}': x", f"'{LONG_PREFIX}a/b': x", "'a/b/c': x", "'A.b/c': x",
     "a: '-x'", f"a: '{'x' * 64}'", "a: 'x y'", "a: 'x\\n\\n'", "'a\\n': x", "a: 'x\\n'"],
)  # fmt: skip
@pytest.mark.parametrize("place", LABEL_PLACES)
def test_a_label_validate_refuses_is_marked_by_the_schema(
    entry: str, place: str, tmp_path: Path
) -> None:
    text = place.format(entry.replace("'", '"'))
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize(
    "entry",
    [f"'{'a' * 63}': x", f"'{LONG_PREFIX}/b': x", "'example.com/A_b.c': ''",
     f"a: '{'x' * 63}'", "a: 'x-_.Y'"],
)  # fmt: skip
@pytest.mark.parametrize("place", LABEL_PLACES)
def test_a_label_validate_accepts_is_not_marked(entry: str, place: str, tmp_path: Path) -> None:
    """At the limits, and with the one final newline Python's `$` lets through."""
    text = place.format(entry.replace("'", '"'))
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


@pytest.mark.parametrize(
    ("entry", "refused"),
    [("labels: {'-a': x}", True), ("labels: {a: '-x'}", True),
     ("annotations: {'a b': x}", True), (f"annotations: {{'{LONG_PREFIX}a/b': x}}", True),
     (f"labels: {{'{LONG_PREFIX}/b': '{'x' * 63}'}}", False),
     (f"annotations: {{'{LONG_PREFIX}/b': x}}", False)],
)  # fmt: skip
def test_environment_labels_and_annotations_agree(
    entry: str, refused: bool, tmp_path: Path
) -> None:
    text = f"environments: {{default: {{{entry}}}}}\n"
    assert (validate_config(tmp_path, text) != []) is refused
    assert (schema_errors(config_validator(), text) != []) is refused


# --- control characters in one-line values: engine args, env values, annotation values ----

ONE_LINE_PLACES = [
    VLLM_SPEC + '  args: ["--chat-template={}"]\n',
    SPEC + 'serve:\n  args: ["--chat-template={}"]\n',
    VLLM_SPEC + '  envs: {{A: "x{}"}}\n',
    VLLM_SPEC + '  envs: [{{name: A, value: "x{}"}}]\n',
    VLLM_SPEC + '  tolerations: [{{key: a, value: "x{}"}}]\n',
]


@pytest.mark.parametrize(
    "char", ["\\t", "\\n", "\\r", "\\x00", "\\x7f", "\\x85", "\\x9f", "\\u2028"]
)
@pytest.mark.parametrize("place", ONE_LINE_PLACES)
def test_a_control_character_validate_refuses_is_marked_by_the_schema(
    char: str, place: str, tmp_path: Path
) -> None:
    text = place.format(char)
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize("char", [" ", "\\xa0", "\\ufeff", "\\u202f", "\\U0001F600", "\\x20"])
@pytest.mark.parametrize("place", ONE_LINE_PLACES[:4])
def test_a_character_validate_accepts_in_one_line_is_not_marked(
    char: str, place: str, tmp_path: Path
) -> None:
    text = place.format(char)
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


@pytest.mark.parametrize(
    ("char", "refused"),
    [("\\x0b", True), ("\\x85", True), ("\\u2029", True),
     ("\\t", False), ("\\n", False), ("\\ufeff", False)],
)  # fmt: skip
def test_annotation_values_keep_tab_and_newline_only(
    char: str, refused: bool, tmp_path: Path
) -> None:
    text = f'environments: {{default: {{annotations: {{example.com/a: "x{char}y"}}}}}}\n'
    assert (validate_config(tmp_path, text) != []) is refused
    assert (schema_errors(config_validator(), text) != []) is refused


# --- tolerations: the API server's rules, as Toleration's validators apply them ------------

TOLERATION = VLLM_SPEC + "  tolerations: [{}]\n"


@pytest.mark.parametrize(
    "toleration",
    ["{}", "{value: x}", "{key: '', value: x}", "{key: 'a b', operator: Exists}",
     f"{{key: '{'k' * 64}', operator: Exists}}", f"{{key: '{LONG_PREFIX}a/k'}}",
     "{key: a, value: '-x'}", f"{{key: a, value: '{'x' * 64}'}}",
     "{key: a, operator: Exists, value: x}", "{key: a, toleration_seconds: 5}",
     "{key: a, effect: NoSchedule, toleration_seconds: 5}"],
)  # fmt: skip
def test_a_toleration_validate_refuses_is_marked_by_the_schema(
    toleration: str, tmp_path: Path
) -> None:
    text = TOLERATION.replace("{}", toleration)
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize(
    "toleration",
    ["{operator: Exists}", "{key: '', operator: Exists, value: ''}", "{key: a}",
     f"{{key: '{'k' * 63}', value: '{'x' * 63}'}}", f"{{key: '{LONG_PREFIX}/k', value: ''}}",
     "{key: example.com/A_b, operator: Exists, effect: NoExecute, toleration_seconds: 0}",
     "{key: a, value: x, toleration_seconds: null}", "{key: a, operator: Exists, value: null}"],
)  # fmt: skip
def test_a_toleration_validate_accepts_is_not_marked(toleration: str, tmp_path: Path) -> None:
    text = TOLERATION.replace("{}", toleration)
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


@pytest.mark.parametrize(("toleration", "refused"), [("{key: '-a'}", True), ("{key: a}", False)])
def test_a_profile_toleration_agrees(toleration: str, refused: bool, tmp_path: Path) -> None:
    text = f"profiles: {{gpu: {{tolerations: [{toleration}]}}}}\n"
    assert (validate_config(tmp_path, text) != []) is refused
    assert (schema_errors(config_validator(), text) != []) is refused


# --- deploy.branch: a safe git branch name ---------------------------------------------


@pytest.mark.parametrize(
    ("branch", "refused"),
    [("/deploy", True), ("-deploy", True), (".deploy", True), ("deploy/", True),
     ("deploy.", True), ("deploy.lock", True), ("a//b", True), ("a..b", True), ("HEAD", True),
     ("de ploy", True), ("'a:b'", True), ("''", True),
     ("deploy", False), ("env/prod-1.x_y", False), ("a.b/c", False), ("head", False),
     ("lock", False), ("a.locks", False), ("HEADS", False), ("x", False)],
)  # fmt: skip
def test_validate_and_the_schema_agree_on_the_deploy_branch(
    branch: str, refused: bool, tmp_path: Path
) -> None:
    text = f"deploy: {{branch: {branch}}}\n"
    assert (validate_config(tmp_path, text) != []) is refused
    assert (schema_errors(config_validator(), text) != []) is refused


# --- images: pinned to a tag other than latest, or to a digest ---------------------------

DIGEST = "@sha256:" + "0" * 64
IMAGE_PLACES = [
    SPEC + "  image: {}\n",
    VLLM_SPEC.replace("serve:", "  image: {}\nserve:"),
    "kind: huggingfaceserve\nname: bert\nspec:\n  path: hf://org/bert\n  image: {}\n"
    "serve:\n  huggingface_task: fill_mask\n  backend: huggingface\n",
]


@pytest.mark.parametrize(
    "image",
    ["vllm", "vllm:latest", "r.io/vllm:latest", "localhost:5000/vllm", "'vllm:'", "r:1/vllm",
     "vllm@sha256:00", "vllm" + DIGEST + "0", "v@1" + DIGEST, "'v llm:1'", '"vllm:1\\t"',
     '"v\\xa0llm:1"', "vllm:1@", "'@sha256:'", "''", "vllm::latest", "vllm:a:latest", "vllm:-1",
     '"vllm:1\\ufeff"', '"vllm:\\u00e9"', "x:latest/y:1", "Vllm/x:1", "r.io/o//x:1"],
)  # fmt: skip
@pytest.mark.parametrize("place", IMAGE_PLACES)
def test_an_image_validate_refuses_is_marked_by_the_schema(
    image: str, place: str, tmp_path: Path
) -> None:
    text = place.format(image)
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize(
    "image",
    ["vllm:v1", "r.io:5000/o/vllm:1.0-cu128", "vllm" + DIGEST, "vllm:latest" + DIGEST,
     "localhost:5000/vllm" + DIGEST, "vllm:latest-2", "vllm:latestx", "R.io/a__b/c-d:V_1",
     "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.2"],
)  # fmt: skip
@pytest.mark.parametrize("place", IMAGE_PLACES)
def test_an_image_validate_accepts_is_not_marked(image: str, place: str, tmp_path: Path) -> None:
    text = place.format(image)
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


@pytest.mark.parametrize(("image", "refused"), [("vllm:latest", True), ("vllm:v1", False)])
def test_a_config_image_agrees(image: str, refused: bool, tmp_path: Path) -> None:
    text = f"vllm: {{image: '{image}', cpu_image: 'cpu{DIGEST}'}}\n"
    assert (validate_config(tmp_path, text) != []) is refused
    assert (schema_errors(config_validator(), text) != []) is refused


# --- KubeAI hands hf:// URLs to the Hub as a repository id -------------------------------

KUBEAI_URL_PLACES = [
    SPEC.replace("hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0", "{}"),
    SPEC + "  adapters: [{{name: a, url: '{}'}}]\n",
]


@pytest.mark.parametrize(
    "url",
    ["hf://org/model/", "hf://model/", "hf://org/model/sub", "hf://org/model:rev", "hf://-org/m",
     "hf://org/.m/", "hf://org//m"],
)  # fmt: skip
@pytest.mark.parametrize("place", KUBEAI_URL_PLACES)
def test_an_hf_url_kubeai_cannot_use_is_marked_by_the_schema(
    url: str, place: str, tmp_path: Path
) -> None:
    text = place.format(url)
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize("url", ["hf://org/model", "hf://model", "hf://o-1/m_2.v3", "s3://b/m/"])
@pytest.mark.parametrize("place", KUBEAI_URL_PLACES)
def test_an_hf_url_kubeai_can_use_is_not_marked(url: str, place: str, tmp_path: Path) -> None:
    text = place.format(url)
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


def test_an_hf_revision_kubeai_accepts_is_not_marked(tmp_path: Path) -> None:
    text = SPEC.replace("v1.0", "v1.0@main")
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


# --- names that become a Service's or an InferenceService's: DNS-1035 labels --------------

HF_SPEC = (
    "kind: huggingfaceserve\nname: {}\nspec:\n  path: hf://org/bert\n"
    "serve:\n  huggingface_task: fill_mask\n  backend: huggingface\n"
)
NAMED_SPECS = [
    HF_SPEC,
    VLLM_SPEC.replace("qwen-cpu", "{}"),
    VLLM_SPEC.replace("qwen-cpu", "{}").replace("-text", "-speech"),
    VLLM_SPEC.replace("qwen-cpu", "{}").replace("-text", "-pooling") + "  task: embed\n",
]


@pytest.mark.parametrize("name", ["1abc", "'0'", "9-a"])
@pytest.mark.parametrize("spec", NAMED_SPECS)
def test_a_name_without_a_leading_letter_is_marked(name: str, spec: str, tmp_path: Path) -> None:
    text = spec.format(name)
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize("name", ["a", "a1", "a-1-b"])
@pytest.mark.parametrize("spec", NAMED_SPECS)
def test_a_name_with_a_leading_letter_is_not_marked(name: str, spec: str, tmp_path: Path) -> None:
    text = spec.format(name)
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


def test_a_kubeai_name_may_start_with_a_digit(tmp_path: Path) -> None:
    text = SPEC.replace("tinyllama-chat", "1b-chat")
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []


@pytest.mark.parametrize(
    ("length", "mode", "refused"),
    [(53, "Standard", False), (54, "Standard", True), (47, "Knative", False),
     (48, "Knative", True), (54, None, True), (53, None, False)],
)  # fmt: skip
def test_an_inference_service_name_fits_kserve_suffixes(
    length: int, mode: str | None, refused: bool, tmp_path: Path
) -> None:
    text = HF_SPEC.format("a" * length) + (f"  deployment_mode: {mode}\n" if mode else "")
    assert (validate_spec(tmp_path, text) != []) is refused
    assert (schema_errors(spec_validator(), text) != []) is refused


# --- vllmserve-pooling: the spec names its task ------------------------------------------

POOLING = "kind: vllmserve-pooling\nname: emb\nspec:\n  url: hf://BAAI/bge-small-en-v1.5\n"


@pytest.mark.parametrize(
    "serve",
    ["", "serve: {}\n", "serve: {task: null}\n", "serve: {replicas: 2}\n",
     "serve: {}\nenvironments: {dev: {serve: {task: embed}}}\n"],
)  # fmt: skip
def test_a_pooling_spec_without_a_task_is_marked(serve: str, tmp_path: Path) -> None:
    text = POOLING + serve
    assert validate_spec(tmp_path, text) != []
    assert schema_errors(spec_validator(), text) != []


@pytest.mark.parametrize(
    "serve",
    ["serve: {task: embed}\n", "serve: {task: score, replicas: 2}\n",
     "serve: {task: embed}\nenvironments: {dev: {serve: {replicas: 2}}}\n",
     "serve: {task: embed}\nenvironments: {prod: {serve: {task: classify}}}\n"],
)  # fmt: skip
def test_a_pooling_spec_with_a_task_is_not_marked(serve: str, tmp_path: Path) -> None:
    text = POOLING + serve
    assert validate_spec(tmp_path, text) == []
    assert schema_errors(spec_validator(), text) == []
