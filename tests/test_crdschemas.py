"""Tests for generator.crdschemas: CRD conversions, looked up by content, shipped or cached."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from generator import check as check_module
from generator import crdconvert, crdschemas, k8sschemas
from generator.check import CheckResult, ManifestChecker
from generator.crdconvert import share_repeats
from generator.crds import bundled_dir, bundled_files
from generator.crdschemas import shipped_dir, write_shipped
from generator.errors import ServegenError
from generator.objectproblems import schema_problems
from generator.yamlio import dump
from tests.objects import crd, git_repository, inference_service, kubeai_model, kustomization

K8S = "1.33"

WIDGET_CRD = crd("example.com", "Widget", "v1", {"type": "object", "properties": {}})
WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CRD file read yet in this process, and an empty cache folder."""
    monkeypatch.setattr(crdschemas, "_FILE_CACHE", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "servegen" / "crds"


def counting_conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The CRD files converted from now on (the conversion still runs)."""
    converted: list[str] = []
    real: Callable[[Path, bytes], Any] = crdconvert.convert_file

    def convert(path: Path, data: bytes) -> Any:
        converted.append(path.name)
        return real(path, data)

    monkeypatch.setattr(crdconvert, "convert_file", convert)
    return converted


# --------------------------------------------------------------------------- shipped


def test_shipped_conversions_are_those_of_the_pinned_crds(tmp_path: Path) -> None:
    """The package data is exactly what converting the bundled CRDs gives today."""
    write_shipped(tmp_path)
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    shipped = {p.name: p.read_bytes() for p in shipped_dir().iterdir()}
    assert written == shipped, "stale: run `python -m generator.crdschemas`"
    index = json.loads(written["index.json"])
    assert sorted(index) == sorted(p.name for p in bundled_files())
    for path in bundled_files():
        assert index[path.name]["key"] == crdschemas.content_key(path.read_bytes())


def test_the_package_ships_the_conversions() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"crdschemas/*.json"' in pyproject
    assert shipped_dir().parent == bundled_dir().parent  # the `schemas` package


def test_bundled_crds_are_not_converted_when_checking(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted = counting_conversions(monkeypatch)
    checker = ManifestChecker(K8S, bundled_crds=bundled_files())
    objects = [kubeai_model(), inference_service(), git_repository(), kustomization()]
    assert checker.check(objects).problems == ()
    assert converted == []
    assert not fresh.exists(), "nothing needs the cache"


def test_a_changed_converter_does_not_use_the_shipped_conversions(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted = counting_conversions(monkeypatch)
    monkeypatch.setattr(crdschemas, "converter_digest", lambda: "another converter")
    models = bundled_dir() / "kubeai.org_models.yaml"  # the small one: YAML parsing is slow
    checker = ManifestChecker(K8S, bundled_crds=[models])
    assert checker.check([kubeai_model()]).problems == ()
    assert converted == [models.name]
    assert len(list(fresh.glob("*.json"))) == 1


def test_an_edited_bundled_crd_is_converted_again(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A file named like a bundled CRD, with other bytes, gets its own conversion."""
    converted = counting_conversions(monkeypatch)
    mine = tmp_path / "crds" / "kubeai.org_models.yaml"
    mine.parent.mkdir()
    text = (bundled_dir() / mine.name).read_text()
    mine.write_text(
        text.replace(
            "                - VLLM\n", "                - VLLM\n                - Triton\n", 1
        )
    )
    obj = kubeai_model()
    obj["spec"]["engine"] = "Triton"
    assert ManifestChecker(K8S, [mine]).check([obj]).problems == ()
    assert converted == [mine.name]


# --------------------------------------------------------------------------- disk cache


def test_a_configured_crd_is_converted_once_per_machine(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    crd = tmp_path / "widgets.json"
    crd.write_text(json.dumps(WIDGET_CRD))
    converted = counting_conversions(monkeypatch)
    assert ManifestChecker(K8S, [crd]).check([WIDGET]).problems == ()
    (entry,) = fresh.glob("*.json")
    assert entry.stem == crdschemas.content_key(crd.read_bytes())
    monkeypatch.setattr(crdschemas, "_FILE_CACHE", {})  # a new process
    bad = {**WIDGET, "spec": {"x": 1}}
    assert [p.path for p in ManifestChecker(K8S, [crd]).check([bad]).problems] == ["spec.x"]
    assert converted == ["widgets.json"]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"key": "another key", "versions": []}',
        b'{"key": "%s"}',
        b"[]",
        # Parses, under the right key, but is not what was written: its digest says so.
        b"0" * 64 + b'\n{"key": "%s", "versions": [{"api_version": "example.com/v1", '
        b'"kind": "Widget", "schema": {}}]}',
    ],
)
def test_a_damaged_or_foreign_cache_entry_is_not_used(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes
) -> None:
    crd = tmp_path / "widgets.json"
    crd.write_text(json.dumps(WIDGET_CRD))
    key = crdschemas.content_key(crd.read_bytes())
    fresh.mkdir(parents=True)
    (fresh / f"{key}.json").write_bytes(content.replace(b"%s", key.encode()))
    converted = counting_conversions(monkeypatch)
    bad = {**WIDGET, "spec": {"x": 1}}
    assert [p.path for p in ManifestChecker(K8S, [crd]).check([bad]).problems] == ["spec.x"]
    assert converted == ["widgets.json"]
    digest, _, body = (fresh / f"{key}.json").read_bytes().partition(b"\n")
    assert json.loads(body)["key"] == key  # converted again, and written whole
    assert digest == hashlib.sha256(body).hexdigest().encode()


def test_an_unwritable_cache_only_costs_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(crdschemas, "_FILE_CACHE", {})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    crd = tmp_path / "widgets.json"
    crd.write_text(json.dumps(WIDGET_CRD))
    assert ManifestChecker(K8S, [crd]).check([WIDGET]).problems == ()


# --------------------------------------------------------------------------- sharing


def kserve_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """The InferenceService schema converted with and without shared subschemas."""
    path = bundled_dir() / "serving.kserve.io_inferenceservices.yaml"
    definitions = k8sschemas.definitions(k8sschemas.resolve_kubernetes_version(K8S))
    converted = crdconvert.convert_file(path, path.read_bytes())
    shared = converted[("serving.kserve.io/v1beta1", "InferenceService")]
    unshared = _inline(shared, shared.get("$defs", {}))
    unshared.pop("$defs", None)
    return k8sschemas.bundle(unshared, definitions), k8sschemas.bundle(shared, definitions)


def _inline(node: Any, shared: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        name = ref.removeprefix(k8sschemas.DEFS_PREFIX)
        if name.startswith("crd.") and len(node) == 1:
            return _inline(shared[name], shared)
        return {k: _inline(v, shared) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, shared) for v in node]
    return node


def broken_inference_services() -> list[dict[str, Any]]:
    """Valid and invalid objects whose errors lie inside shared subschemas."""
    objects = [inference_service()]
    for component in ("predictor", "transformer"):
        obj = inference_service()
        obj["spec"][component] = {
            "containers": [
                {"name": "c", "image": "x", "bogus": 1, "ports": [{"containerPort": "80"}]},
                {"name": 2, "env": [{"name": "A", "valueFrom": {"secretKeyRef": 3}}]},
            ],
            "volumes": [{"name": "v", "emptyDir": {"medium": 1, "sizeLimit": []}}],
            "minReplicas": -1,
        }
        objects.append(obj)
    model = inference_service()
    model["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"] = {"a": 1}
    return [*objects, model]


def test_shared_subschemas_judge_every_object_as_the_inline_ones_do() -> None:
    unshared, shared = kserve_schemas()
    assert len(json.dumps(shared)) * 4 < len(json.dumps(unshared))
    assert all(name.startswith("crd.") for name in shared["$defs"] if "io.k8s" not in name)
    inline = jsonschema_rs.validator_for(unshared)
    compact = jsonschema_rs.validator_for(shared)
    for obj in broken_inference_services():
        expected = schema_problems(inline, copy.deepcopy(obj))
        assert schema_problems(compact, copy.deepcopy(obj)) == expected
    assert len(schema_problems(compact, broken_inference_services()[1])) >= 5


def test_share_repeats_keeps_a_schema_without_repeats_as_it_is() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert share_repeats(copy.deepcopy(schema)) == schema
    leaf = {"type": "object", "properties": {f"f{i}": {"type": "integer"} for i in range(8)}}
    twice = {"type": "object", "properties": {"x": leaf, "y": copy.deepcopy(leaf)}}
    shared = share_repeats(twice)
    (name,) = shared["$defs"]
    ref = {"$ref": f"#/$defs/{name}"}
    assert shared["properties"] == {"x": ref, "y": ref}
    assert shared["$defs"][name] == leaf


# --------------------------------------------------------------------------- conversion


def problems_at(result: CheckResult) -> dict[str, str]:
    return {p.path: p.message for p in result.problems}


CONVERSION_CRD = """\
# a comment, then a non-CRD document that must be ignored
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: false
    storage: false
    schema: {openAPIV3Schema: {type: object}}
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [port, size]
            properties:
              port: {x-kubernetes-int-or-string: true, anyOf: [{type: integer}, {type: string}]}
              size: {type: integer, default: 1, exclusiveMinimum: true, minimum: 0}
              note: {type: string, nullable: true}
              mode: {type: string, enum: [fast, slow], nullable: true}
              free: {type: object, x-kubernetes-preserve-unknown-fields: true}
              map: {type: object, additionalProperties: {type: string}}
              empty: {type: object}
              tags: {type: array, x-kubernetes-list-type: set, items: {type: string}}
              template:
                type: object
                x-kubernetes-embedded-resource: true
                x-kubernetes-preserve-unknown-fields: true
              either:
                anyOf: [{required: [a]}, {required: [b]}]
                type: object
                properties: {a: {type: string}, b: {type: string}}
            x-kubernetes-validations:
            - rule: self.port != 0
"""


def widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"port": 80, **spec},
    }


@pytest.fixture()
def widget_validator(tmp_path: Path) -> ManifestChecker:
    crd_dir = tmp_path / "crds"
    crd_dir.mkdir()
    (crd_dir / "widgets.yaml").write_text(CONVERSION_CRD)
    return ManifestChecker(K8S, [crd_dir])


def test_crd_conversion_accepts_what_the_api_server_accepts(
    widget_validator: ManifestChecker,
) -> None:
    objects = [
        widget(),  # size is required but defaulted
        widget(port="http", size=2, note=None, mode=None, tags=["a", "b"]),
        widget(free={"anything": {"goes": [1]}}, map={"k": "v"}, either={"b": "x"}),
        widget(template={"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {}}, "x": 1}),
    ]
    assert widget_validator.check(objects).problems == ()


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"port": 1.5}, "spec.port", "must be integer or string"),
        ({"size": 0}, "spec.size", "less than or equal to the minimum of 0"),
        ({"mode": "medium"}, "spec.mode", '"medium" is not one of'),
        ({"empty": {"x": 1}}, "spec.empty.x", 'unknown field "x"'),
        ({"map": {"k.io/x": 1}}, 'spec.map["k.io/x"]', "must be string"),
        ({"tags": ["a", "a"]}, "spec.tags", "non-unique"),
        ({"template": {"kind": "Pod"}}, "spec.template.apiVersion", "required field is missing"),
        (
            {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": "x"}}},
            "spec.template.metadata.labels",
            "must be object",
        ),
        ({"either": {"c": "x"}}, "spec.either.c", 'unknown field "c"'),
    ],
)
def test_crd_conversion_rejects_what_the_api_server_rejects(
    widget_validator: ManifestChecker, spec: dict[str, Any], path: str, fragment: str
) -> None:
    found = problems_at(widget_validator.check([widget(**spec)]))
    assert path in found, found
    assert fragment in found[path]


def test_unserved_crd_version_is_not_validated_against(widget_validator: ManifestChecker) -> None:
    obj = widget()
    obj["apiVersion"] = "example.com/v1alpha1"
    assert "does not serve version v1alpha1" in widget_validator.check([obj]).problems[0].message


def test_changed_crd_file_is_reloaded(tmp_path: Path) -> None:
    crd = tmp_path / "widgets.yaml"
    crd.write_text(CONVERSION_CRD)
    obj = widget(mode="medium")
    assert ManifestChecker(K8S, [crd]).check([obj]).problems != ()
    crd.write_text(CONVERSION_CRD.replace("enum: [fast, slow]", "enum: [fast, medium, slow]"))
    assert ManifestChecker(K8S, [crd]).check([obj]).problems == ()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "does not exist"),
        # Where, and what the parser found; not the parser's own text, which quotes the file.
        ("kind: [unclosed\n", "crd.yaml:2:1: invalid YAML: did not find expected "),
        ("apiVersion: v1\nkind: ConfigMap\n", "contains no CustomResourceDefinition"),
        (
            "kind: CustomResourceDefinition\nspec: {group: x.io}\n",
            # at `spec`, names' deepest existing parent
            "crd.yaml:2:7: not an apiextensions.k8s.io/v1 CustomResourceDefinition: "
            "spec.names must be a mapping",
        ),
        (
            "kind: CustomResourceDefinition\nspec: TOP-SECRET-abc\n",
            "CustomResourceDefinition: spec must be a mapping",
        ),
        (
            "kind: CustomResourceDefinition\nspec: {group: x.io, names: {kind: W}, "
            "versions: [{name: v1, schema: {}}]}\n",
            r"spec.versions\[0\].schema.openAPIV3Schema must be a mapping",
        ),
    ],
)
def test_bad_crd_sources_are_servegen_errors(
    tmp_path: Path, content: str | None, fragment: str
) -> None:
    source = tmp_path / "crd.yaml"
    if content is not None:
        source.write_text(content)
    with pytest.raises(ServegenError, match=fragment) as caught:
        ManifestChecker(K8S, [source])
    assert "TOP-SECRET" not in caught.value.message and "Traceback" not in caught.value.message


# --------------------------------------------------------------------------- untrusted CRDs
# A CRD file is named by servegen.yaml, which spec authors write: what the API server
# refuses in one is refused here, at its field, and nothing in one reaches outside.


def widget_file(tmp_path: Path, spec_schema: Any, name: str = "widgets.json") -> Path:
    path = tmp_path / name  # crd() puts the schema under properties.spec
    path.write_text(json.dumps(crd("example.com", "Widget", "v1", spec_schema)))
    return path


def conversion_error(path: Path) -> str:
    with pytest.raises(ServegenError) as caught:
        crdconvert.convert_file(path, path.read_bytes())
    return str(caught.value)


AT = "spec.versions[0].schema.openAPIV3Schema.properties.spec"


@pytest.mark.parametrize(
    ("spec_schema", "where", "message"),
    [
        ({"$ref": "file:///etc/hostname"}, "$ref", "`$ref` is not supported in a CRD schema"),
        ({"type": "object", "patternProperties": {}}, "patternProperties", "not supported"),
        ({"type": "object", "definitions": {}}, "definitions", "not supported"),
        ({"type": "object", "$defs": {}}, "$defs", "not a field of a CRD schema"),
        ({"type": "object", "properties": ["a"]}, "properties", "must be a mapping of schemas"),
        ({"type": "object", "properties": {"a": "string"}}, "properties.a", "must be a schema"),
        ({"allOf": {"a": 1}}, "allOf", "must be a list of schemas"),
        ({"type": "object", "required": [["a"]]}, "required", "must be a list of field names"),
        ({"type": "string", "maxLength": "5"}, "maxLength", "must be an integer"),
        ({"type": "string", "maxLength": True}, "maxLength", "must be an integer"),
        ({"type": 5}, "type", "must be a string"),
        (
            {"type": "string", "pattern": "([a-z"},
            "pattern",
            "'([a-z' is not a regular expression JSON Schema can read",
        ),
        ({"type": "string", "minLength": -2}, "minLength", "-2 is negative: a count is 0 or more"),
        (
            {"type": "number", "multipleOf": 0},
            "multipleOf",
            "0: must be greater than 0",
        ),
        (
            {"type": "null"},
            "type",
            "'null' is not one of array, boolean, integer, number, object, string",
        ),
    ],
)
def test_what_the_api_server_refuses_in_a_crd_schema_is_named(
    tmp_path: Path, spec_schema: Any, where: str, message: str
) -> None:
    path = widget_file(tmp_path, spec_schema)
    error = conversion_error(path)
    assert error.startswith(f"{path}:1:"), error  # JSON too: read again for the position
    position, _, rest = error[len(f"{path}:") :].partition(": ")
    assert rest.startswith(f"{AT}.{where}: ") and message in rest, error
    refused = spec_schema
    for key in where.split("."):
        refused = refused[key]
    column = int(position.split(":")[1])
    assert path.read_text()[column - 1 :].startswith(json.dumps(refused)), error


def test_what_the_api_server_takes_and_json_schema_would_not_is_read_as_it_means(
    tmp_path: Path,
) -> None:
    """An empty `type` (Go reads no type), an empty `anyOf` (constrains nothing) and a
    field `required` twice: accepted, as the API server accepts them, where the JSON
    Schema compiler would refuse the whole schema."""
    spec = {
        "type": "object",
        "properties": {"a": {"type": "", "x-kubernetes-int-or-string": True}},
        "anyOf": [],
        "required": ["a", "a"],
    }
    path = widget_file(tmp_path, spec)
    checker = ManifestChecker(K8S, [path])
    ok = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert checker.check([{**ok, "spec": {"a": 5}}]).problems == ()
    [problem] = checker.check([{**ok, "spec": {}}]).problems
    assert (problem.path, problem.message) == ("spec.a", "required field is missing")


def test_a_refused_crd_schema_in_yaml_is_named_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "widgets.yaml"
    path.write_text(dump(crd("example.com", "Widget", "v1", {"type": "object", "zz": 1})))
    [(index, text)] = [(i, t) for i, t in enumerate(path.read_text().splitlines()) if "zz:" in t]
    at = f"{path}:{index + 1}:{text.index('zz:') + 5}"  # the value, 1-based
    assert conversion_error(path).startswith(f"{at}: {AT}.zz: "), conversion_error(path)


def test_a_crd_schema_nested_beyond_reason_is_refused(tmp_path: Path) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(200):  # 900 hit Python's recursion limit: an internal error
        schema = {"type": "object", "properties": {"a": schema}}
    assert "schemas nested more than 64 deep" in conversion_error(widget_file(tmp_path, schema))


def test_a_crd_file_of_aliases_is_refused_quickly(tmp_path: Path) -> None:
    """Each level doubles the nodes: 1.5 KB took 16 s and 500 MB to convert."""
    lines = ["l0: &l0 {type: string}"]
    lines += [
        f"l{n}: &l{n} {{type: object, properties: {{a: *l{n - 1}, b: *l{n - 1}}}}}"
        for n in range(1, 40)
    ]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "aliases expand to too many nodes" in conversion_error(path)


def test_no_ref_is_ever_followed_when_checking(tmp_path: Path) -> None:
    """Not even from a converted schema that holds one (a cache entry, a future bug)."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"type": "string", "pattern": "^TOP-SECRET$"}')
    schema = {"type": "object", "properties": {"a": {"$ref": secret.as_uri()}}}
    with pytest.raises(ServegenError) as caught:
        check_module._compile(
            ("crd", "example.com/v1", "Widget", "x", "y"), lambda: schema, "crds/w.yaml"
        )
    message = str(caught.value)
    assert message.startswith("crds/w.yaml: schema for example.com/v1/Widget cannot be compiled: ")
    assert "\n" not in message and "TOP-SECRET" not in message


def test_a_long_enum_is_listed_up_to_a_lines_worth(tmp_path: Path, fresh: Path) -> None:
    choices = [f"v{n}" for n in range(20_000)]
    path = widget_file(
        tmp_path, {"type": "object", "properties": {"mode": {"type": "string", "enum": choices}}}
    )
    bad = {**WIDGET, "spec": {"mode": "medium"}}
    [problem] = ManifestChecker(K8S, [path]).check([bad]).problems
    assert problem.message.startswith('"medium" is not one of: "v0", "v1",')
    assert problem.message.endswith('"v19" and 19980 more')
