"""The runtime boundary (one document shape, typed plug-ins) and the template renderer:
values are leaves of the parsed template, never YAML text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

import runtimes
from generator.config import Config
from generator.errors import RenderError
from generator.spec import SpecDocument
from runtimes.base import MARK, ObjectRef, Runtime, _shape_of, fill, plain_values
from runtimes.huggingfaceserve import HuggingFaceServe
from runtimes.kubeai_text import KubeAIText

RUNTIMES = list(runtimes.registry().values())
MINIMAL_SPEC = {"url": "hf://org/model", "path": "hf://org/model"}


def _minimal(runtime: Runtime[Any], **extra: Any) -> dict[str, Any]:
    location = runtime.document.location_field
    return {"kind": runtime.kind, "name": "m", "spec": {location: MINIMAL_SPEC[location]}, **extra}


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.kind)
def test_each_runtime_document_is_the_shared_shape_with_its_own_kind(
    runtime: Runtime[Any],
) -> None:
    document = runtime.document
    assert issubclass(document, SpecDocument)
    assert get_args(document.model_fields["kind"].annotation) == (runtime.kind,)
    assert list(document.model_fields)[:4] == ["kind", "name", "namespace", "labels"]


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.kind)
def test_version_and_override_fields_name_real_fields(runtime: Runtime[Any]) -> None:
    """promote, pinning and diff read these names: a typo would silently read nothing."""
    document = runtime.document
    spec = document.model_fields["spec"].annotation
    serve = document.model_fields["serve"].annotation
    assert isinstance(spec, type) and issubclass(spec, BaseModel)
    assert isinstance(serve, type) and issubclass(serve, BaseModel)
    assert document.location_field in spec.model_fields
    assert set(document.version_serve_fields) <= set(serve.model_fields)
    assert set(runtime.spec_overrides) <= set(spec.model_fields)


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.kind)
def test_an_absent_serve_section_is_an_empty_one(runtime: Runtime[Any]) -> None:
    absent = runtime.document.model_validate(_minimal(runtime))
    empty = runtime.document.model_validate(_minimal(runtime, serve={}))
    assert absent == empty
    assert absent.serve == type(empty.serve)()


@pytest.mark.parametrize("runtime", RUNTIMES, ids=lambda r: r.kind)
def test_a_null_serve_section_is_refused(runtime: Runtime[Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        runtime.document.model_validate(_minimal(runtime, serve=None))
    assert [error["loc"] for error in caught.value.errors()] == [("serve",)]


def test_only_kserve_claims_objects_a_controller_makes() -> None:
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "bert", "namespace": "ml"},
    }
    made = list(HuggingFaceServe().controller_objects(isvc))
    assert [(o["kind"], o["metadata"]["name"]) for o, _ in made] == [
        ("Deployment", "bert-predictor"),
        ("Service", "bert-predictor"),
        ("HorizontalPodAutoscaler", "bert-predictor"),
    ]
    assert all(o["metadata"]["namespace"] == "ml" for o, _ in made)
    others = [r for r in RUNTIMES if r.kind != HuggingFaceServe.kind]
    assert all(list(r.controller_objects(isvc)) == [] for r in others)


def test_only_kubeai_has_advice_for_a_shared_model() -> None:
    model = {"apiVersion": "kubeai.org/v1", "kind": "Model", "metadata": {"name": "m"}}
    assert "own namespace (kubeai)" in str(KubeAIText().shared_object_hint(model, "kubeai"))
    assert [r.shared_object_hint(model, "x") for r in RUNTIMES if r.kind != "kubeai-text"] == [
        None
    ] * (len(RUNTIMES) - 1)


def _placeholder(index: int) -> str:
    return f"{MARK}{index}{MARK}"


def test_fill_puts_values_in_as_whole_nodes() -> None:
    skeleton = {"a": _placeholder(0), "b": [_placeholder(1), "literal"], "c": 3}
    values = ["x\n---\nkind: Secret", {"k": [1, None]}]
    assert fill(skeleton, values) == {"a": values[0], "b": [values[1], "literal"], "c": 3}


def test_fill_makes_a_new_tree() -> None:
    skeleton = {"a": {"b": [_placeholder(0)]}}
    filled = fill(skeleton, ["v"])
    assert skeleton == {"a": {"b": [_placeholder(0)]}}
    assert filled["a"] is not skeleton["a"]


@pytest.mark.parametrize(
    "skeleton",
    [{"name": f"prefix-{_placeholder(0)}"}, [f"{_placeholder(0)}{_placeholder(1)}"], [MARK]],
)
def test_a_value_spliced_into_text_is_refused(skeleton: object) -> None:
    with pytest.raises(RenderError, match="inside other text"):
        fill(skeleton, ["a", "b"])


def test_a_value_as_a_key_is_refused() -> None:
    with pytest.raises(RenderError, match="as a key"):
        fill({_placeholder(0): 1}, ["a"])


SKELETONS: list[list[Any]] = [
    [{"a": _placeholder(0), "b": [_placeholder(1), "literal", {"c": _placeholder(2)}]}],
    [None, _placeholder(0), {"k": [[_placeholder(1)]], 1: 2.5}, None, ["x", _placeholder(2)]],
    [{"name": f"prefix-{_placeholder(0)}"}, {"a": _placeholder(1)}],
    [{"a": _placeholder(0)}, {_placeholder(1): 1}],
    [[MARK], {_placeholder(0): _placeholder(1)}],
]


@pytest.mark.parametrize("skeleton", SKELETONS)
def test_a_shape_fills_as_fill_does(skeleton: list[Any]) -> None:
    """What a render fills from its cached shape is fill() of each document: the same
    tree, or the same refusal."""
    values = ["x\n---\nkind: Secret", {"k": [1, None]}, 7]
    shape = _shape_of(skeleton)
    try:
        expected = [fill(obj, values) for obj in skeleton if obj is not None]
    except RenderError as exc:
        with pytest.raises(RenderError) as raised:
            shape.objects(values)
        assert raised.value.message == exc.message
        return
    assert shape.objects(values) == expected


def test_a_shape_fills_a_new_tree_each_time() -> None:
    shape = _shape_of([{"a": {"b": [_placeholder(0)]}}])
    first, second = shape.objects(["v"]), shape.objects(["w"])
    first[0]["a"]["b"].append("changed")
    assert second == [{"a": {"b": ["w"]}}]
    assert shape.objects(["v"]) == [{"a": {"b": ["v"]}}]
    assert shape.skeleton == [{"a": {"b": [_placeholder(0)]}}]


def test_objects_other_than_the_expected_ones_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The objects rendered and those expected are both listed, each sorted as
    ObjectRefs sort (apiVersion, kind, name) and shown as kind/name."""
    runtime = KubeAIText()
    doc = runtime.document.model_validate(_minimal(runtime))
    config = Config()
    rendered = runtime.render(doc, config)
    want = [ObjectRef("v1", "Service", "b"), ObjectRef("a/v1", "Zeta", "a")]
    monkeypatch.setattr(KubeAIText, "expected", lambda self, doc, config: want)
    got = ", ".join(str(ObjectRef.of(obj)) for obj in rendered)
    with pytest.raises(RenderError) as raised:
        runtime.render(doc, config)
    assert raised.value.message == (
        f"kubeai-text spec 'm': rendered {got} but expected Zeta/a, Service/b"
    )


def test_plain_values_reads_like_json() -> None:
    values = [("t", 1), {1: 2.5}, None, True, "\u2028"]
    copied = plain_values(values)
    assert copied == [["t", 1], {"1": 2.5}, None, True, "\u2028"]


@pytest.mark.parametrize("value", [float("nan"), object(), {(1, 2): 3}])
def test_plain_values_refuses_what_is_not_plain_data(value: object) -> None:
    with pytest.raises(RenderError, match="not plain data"):
        plain_values([value])


def test_registry_lists_each_runtime_under_its_own_kind() -> None:
    assert runtimes.kinds() == tuple(runtimes.registry())
    for kind, runtime in runtimes.registry().items():
        assert runtime.kind == kind
        assert runtimes.get(kind) is runtime
    assert runtimes.get("no-such-kind") is None


_SCAFFOLD = Path(__file__).resolve().parents[1] / "generator" / "scaffold"
_MODULES = {
    "tinyllama-chat.yaml": "runtimes.kubeai_text",
    "qwen-chat.yaml": "runtimes.vllmserve",
    "distilbert-sentiment.yaml": "runtimes.huggingfaceserve",
}


@pytest.mark.parametrize("spec", sorted(_MODULES))
def test_validating_one_kind_imports_only_that_runtime(tmp_path: Path, spec: str) -> None:
    """A repository pays start-up time only for the runtimes its specs use."""
    (tmp_path / "specs").mkdir()
    shutil.copy(_SCAFFOLD / "servegen.yaml", tmp_path / "servegen.yaml")
    shutil.copy(_SCAFFOLD / "specs" / spec, tmp_path / "specs" / spec)
    script = (
        "import sys\n"
        "from generator.cli import main\n"
        "code = main(['-C', sys.argv[1], 'validate'])\n"
        "print(sorted(m for m in sys.modules if m in sys.argv[2:]))\n"
        "raise SystemExit(code)\n"
    )
    env = {**os.environ, "SERVEGEN_NO_CACHE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *sorted(set(_MODULES.values()))],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == repr([_MODULES[spec]])
