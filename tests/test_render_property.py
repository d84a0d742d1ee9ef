"""Property test: hostile but valid specs render exactly the expected objects.

Spec values that look like YAML structure (newlines, `---`, `{{ }}`, anchors, quotes,
Unicode line separators) must arrive verbatim in the objects, and never add, remove or
reshape one; and the files written for them must parse back to the same objects.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.config import Config
from generator.fields import _LINE_FORBIDDEN, _TEXT_FORBIDDEN, credential_kind
from generator.layout import model_files
from generator.render import render_spec
from generator.validate import ValidatedSpec
from generator.yamlio import load_documents, parse_rendered
from runtimes import registry
from runtimes.base import ObjectRef
from runtimes.kubeai_text import FILES_DIGEST_ENV, File, files_digest

HOSTILE = [
    "\n---\nkind: Secret\n",
    "{{ 7*7 }}",
    "{% raw %}",
    "&anchor [*anchor]",
    "'\"\\",
    "key: value",
    "- item",
    "\u2028\u0085\x7f",
    "#comment",
    "!!python/object:os.system",
    "",
    "null",
    "true",
    "0x1F",
    "\ue0000\ue000",  # what a placeholder for the first template value looks like
    "\ue000",
]
text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40),
).filter(lambda value: credential_kind(value) is None)
env_names = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,12}\Z").filter(
    lambda n: not any(w in n for w in ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY"))
)
names = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")
# Args, env values and the like are one line: control characters are refused there
# (tests/corpus/invalid/control-characters-*.yaml); file contents may span lines.
line = text.filter(lambda value: _LINE_FORBIDDEN.search(value) is None)
content = text.filter(lambda value: _TEXT_FORBIDDEN.search(value) is None)
args = st.lists(line.filter(lambda a: not a.startswith("-")), max_size=4)


def _spec(runtime_kind: str, document: dict[str, Any]) -> ValidatedSpec:
    runtime = registry()[runtime_kind]
    parsed = load_documents("{}")[0]
    base = runtime.document.model_validate(document)
    return ValidatedSpec("specs/x.yaml", parsed, runtime, base, {"default": base})


def _assert_round_trip(spec: ValidatedSpec, config: Config) -> list[dict[str, Any]]:
    model = render_spec(spec, config)
    objects = list(model.base)
    assert sorted(ObjectRef.of(o) for o in objects) == sorted(
        spec.runtime.expected(spec.base, config)
    )
    for path, data in model_files(model).items():
        parsed = [d for d in parse_rendered(data.decode()) if d is not None]
        if "/base/" in path and not path.endswith("kustomization.yaml"):
            assert parsed == [
                o
                for o in objects
                if path.endswith(f"-{o['metadata']['name']}.yaml") and o["kind"].lower() in path
            ]
    return objects


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=names,
    envs=st.dictionaries(env_names, line, max_size=4),
    extra=args,
    content=content,
)
def test_kubeai_text_hostile_values(
    name: str, envs: dict[str, str], extra: list[str], content: str
) -> None:
    config = Config()
    spec = _spec(
        "kubeai-text",
        {
            "kind": "kubeai-text",
            "name": name,
            "spec": {"url": "hf://org/model"},
            "serve": {"envs": envs, "args": extra, "files": [{"path": "/c", "content": content}]},
        },
    )
    (model,) = _assert_round_trip(spec, config)
    assert model["metadata"]["name"] == name
    files = [{"path": "/c", "content": content}]
    # Beside the spec's own: the files' digest, which rolls the pods when they change.
    digest = files_digest([File.model_validate(f) for f in files])
    assert model["spec"].get("env", {}) == {**envs, FILES_DIGEST_ENV: digest}
    assert model["spec"].get("args", []) == extra
    assert model["spec"]["files"] == files


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, envs=st.dictionaries(env_names, line, max_size=4), extra=args)
def test_vllmserve_text_hostile_values(name: str, envs: dict[str, str], extra: list[str]) -> None:
    config = Config()
    spec = _spec(
        "vllmserve-text",
        {
            "kind": "vllmserve-text",
            "name": name,
            "spec": {"url": "hf://org/model"},
            "serve": {"envs": envs, "args": extra},
        },
    )
    objects = _assert_round_trip(spec, config)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][len(container["args"]) - len(extra) :] == extra
    rendered_env = {e["name"]: e.get("value") for e in container["env"]}
    for key, value in envs.items():
        assert rendered_env[key] == value


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=names, envs=st.dictionaries(env_names, line, max_size=4), extra=args)
def test_huggingfaceserve_hostile_values(name: str, envs: dict[str, str], extra: list[str]) -> None:
    config = Config()
    spec = _spec(
        "huggingfaceserve",
        {
            "kind": "huggingfaceserve",
            "name": name,
            "spec": {"path": "hf://org/model"},
            "serve": {"envs": envs, "args": extra},
        },
    )
    (isvc,) = _assert_round_trip(spec, config)
    model = isvc["spec"]["predictor"]["model"]
    assert model["args"][len(model["args"]) - len(extra) :] == extra
    assert {e["name"]: e.get("value") for e in model.get("env", [])} == envs
