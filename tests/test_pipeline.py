"""The whole pipeline on examples/: objects, layout, kustomize, determinism, freshness."""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator import buildcache, cli
from generator.commands import render as render_command
from generator.errors import InvalidInputError
from generator.layout import json_patch
from generator.pipeline import Build, Repository, _walk_order, build
from generator.render import object_key
from generator.validate import load_config
from generator.write import MANIFEST, manifest_bytes, write_tree
from tests.conftest import EXAMPLES, OUTPUT
from tests.kustomize import kustomize


@pytest.fixture(scope="module")
def examples_build() -> Build:
    return build(EXAMPLES, keep_objects=True)  # custom resources: the bundled CRDs


def test_examples_render_every_runtime(examples_build: Build) -> None:
    runtimes = {model.runtime for model in examples_build.models}
    assert runtimes == {
        "kubeai-text",
        "vllmserve-text",
        "vllmserve-speech",
        "vllmserve-pooling",
        "huggingfaceserve",
    }
    assert not examples_build.notes  # every custom resource had its CRD


def test_output_folder_is_fresh(examples_build: Build) -> None:
    """output/ at the top of the repository is examples/ rendered: CI fails when stale."""
    on_disk = {
        path.relative_to(OUTPUT).as_posix(): path.read_bytes()
        for path in OUTPUT.rglob("*")
        if path.is_file()
    }
    expected = {**examples_build.files, MANIFEST: manifest_bytes(examples_build.files)}
    assert sorted(on_disk) == sorted(expected), "run: servegen -C examples render --out ../output"
    stale = [path for path, data in expected.items() if on_disk[path] != data]
    assert stale == [], "output/ is stale; run: servegen -C examples render --out ../output"


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_kustomize_builds_exactly_the_rendered_objects(
    examples_build: Build, tmp_path: Path, environment: str
) -> None:
    write_tree(tmp_path, examples_build.files)
    built = kustomize(tmp_path / "clusters" / environment)
    expected = [
        obj
        for model in examples_build.models
        if environment in model.environments
        for obj in model.environments[environment].objects
    ]
    assert sorted(built, key=object_key) == sorted(expected, key=object_key)
    assert len(built) == len(expected) > 0


def test_rendering_is_deterministic(crds_dir: Path, examples_build: Build) -> None:
    again = build(EXAMPLES, crds=[crds_dir])
    assert again.files == examples_build.files


def test_unchanged_files_are_not_rewritten(examples_build: Build, tmp_path: Path) -> None:
    first = write_tree(tmp_path, examples_build.files)
    assert len(first.written) == len(examples_build.files)
    second = write_tree(tmp_path, examples_build.files)
    assert second.written == () and second.removed == ()
    assert second.unchanged == len(examples_build.files)


def test_stale_files_are_removed_but_not_files_servegen_did_not_write(
    examples_build: Build, tmp_path: Path
) -> None:
    gone = {"models/gone/base/x.yaml": b"x: 1\n"}
    write_tree(tmp_path, {**examples_build.files, **gone})
    (tmp_path / "NOTES.txt").write_text("mine\n")
    stats = write_tree(tmp_path, examples_build.files)
    assert stats.removed == ("models/gone/base/x.yaml",)
    assert not (tmp_path / "models" / "gone").exists()
    assert (tmp_path / "NOTES.txt").read_text() == "mine\n"


def test_no_output_has_absolute_paths_or_timestamps(examples_build: Build) -> None:
    for path, data in examples_build.files.items():
        text = data.decode()
        assert str(EXAMPLES) not in text, path
        assert "/tmp/" not in text and "T00:" not in text, path


@pytest.mark.parametrize(
    ("old", "new", "ops"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, [{"op": "replace", "path": "/a", "value": 2}]),
        ({"a": 1}, {}, [{"op": "remove", "path": "/a"}]),
        ({}, {"a/b": {"c~": 1}}, [{"op": "add", "path": "/a~1b", "value": {"c~": 1}}]),
        ({"l": [1, 2]}, {"l": [1, 3]}, [{"op": "replace", "path": "/l/1", "value": 3}]),
        ({"l": [1, 2]}, {"l": [1]}, [{"op": "replace", "path": "/l", "value": [1]}]),
        ({"a": 1}, {"a": True}, [{"op": "replace", "path": "/a", "value": True}]),
    ],
)
def test_json_patch(old: Any, new: Any, ops: list[dict[str, Any]]) -> None:
    assert list(json_patch(old, new)) == ops


def test_environment_overrides_become_patches(examples_build: Build) -> None:
    """tinyllama-chat's prod override is a patch on the base Model, not a second copy."""
    patch = examples_build.files[
        "models/tinyllama-chat/overlays/prod/patch-model-tinyllama-chat.yaml"
    ].decode()
    assert "path: /spec/resourceProfile" in patch
    assert 'value: "nvidia-gpu-l4:1"' in patch
    dev_patch = "models/tinyllama-chat/overlays/dev/patch-model-tinyllama-chat.yaml"
    assert "VLLM_CPU_KVCACHE_SPACE" in examples_build.files[dev_patch].decode()
    # No override and no environment annotations: the overlay is namespace and labels only.
    assert not any(
        p.startswith("models/bge-reranker/overlays/dev/patch-") for p in examples_build.files
    )


def test_disabled_environment_has_no_overlay(examples_build: Build) -> None:
    files = examples_build.files
    assert "models/faster-whisper-medium/overlays/dev/kustomization.yaml" in files
    assert not any(p.startswith("models/faster-whisper-medium/overlays/prod/") for p in files)
    assert b"faster-whisper-medium" not in files["clusters/prod/kustomization.yaml"]


def test_summaries_keep_identities_and_give_the_same_files(
    crds_dir: Path, examples_build: Build
) -> None:
    """The default (streaming) build keeps only object identities, and writes the same."""
    slim = build(EXAMPLES, crds=[crds_dir])
    assert slim.files == examples_build.files
    assert slim.object_count() == examples_build.object_count()
    for full, small in zip(examples_build.models, slim.models, strict=True):
        assert small.base == ()
        for env, rendered in small.environments.items():
            keys = [object_key(obj) for obj in full.environments[env].objects]
            assert [object_key(obj) for obj in rendered.objects] == keys
            assert all(
                set(obj) <= {"apiVersion", "kind", "metadata", "spec"} for obj in rendered.objects
            )


def test_vllm_spec_named_like_a_kserve_predictor_is_refused(example_repo: Path) -> None:
    """KServe makes `<name>-predictor` objects: a vLLM spec of that name would collide."""
    qwen = example_repo / "specs" / "vllm" / "qwen-cpu.yaml"
    qwen.write_text(qwen.read_text().replace("name: qwen-cpu", "name: bert-sentiment-predictor"))
    with pytest.raises(InvalidInputError) as caught:
        build(example_repo)
    messages = sorted(str(d) for d in caught.value.diagnostics)
    assert messages and all("specs/vllm/qwen-cpu.yaml:4:7: error: name:" in m for m in messages)
    assert any(
        "Deployment/bert-sentiment-predictor in namespace llm-dev (environment dev) is made "
        "by KServe for the InferenceService of specs/kserve/bert-sentiment.yaml:4:7" in m
        for m in messages
    )
    assert any("Service/bert-sentiment-predictor in namespace llm-dev" in m for m in messages)


def test_files_are_ordered_as_discovered_after_paths_come_and_go(example_repo: Path) -> None:
    # The order is kept between calls; a path added or removed must still be placed.
    config, problems = load_config(example_repo)
    assert not problems
    repository = Repository(example_repo, config)
    repository.update(repository.scan())
    first = [state.digest for state in repository.ordered()]
    specs = example_repo / config.specs
    source = next(specs.rglob("*.yaml"))
    copied = specs / "aa" / source.name
    copied.parent.mkdir()
    copied.write_text(source.read_text().replace("name: ", "name: copy-", 1))
    repository.update(repository.scan())
    walked = sorted(repository.files, key=_walk_order)
    assert list(repository.files) != walked  # added last, yet ordered by the walk
    assert [repository.files[rel] for rel in walked] == repository.ordered()
    copied.unlink()
    repository.update([copied.relative_to(example_repo).as_posix()])
    assert [state.digest for state in repository.ordered()] == first


_NAMES = st.sampled_from(["a", "ab", "b", "a.b", "a\x01", "\x02", "\x01", "é", "B"])


@given(st.sets(st.lists(_NAMES, min_size=1, max_size=3).map("/".join), max_size=8))
@settings(max_examples=60, deadline=None)
def test_walk_order_is_the_order_of_a_sorted_top_down_walk(paths: set[str]) -> None:
    # A path that is also another's folder cannot be a file too.
    files = {p for p in paths if not any(q.startswith(p + "/") for q in paths)}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for rel in files:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).touch()
        walked = []
        for top, folders, names in os.walk(root):
            folders.sort()
            base = Path(top).relative_to(root)
            walked += [(base / name).as_posix() for name in sorted(names)]
    assert sorted(files, key=_walk_order) == walked


def _full_collections_paused() -> bool:
    return gc.get_threshold()[2] >= 1_000_000


def test_storing_and_writing_a_build_start_no_full_collection(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh build and its first write keep every object they load to the end; a full
    collection then would walk them all for nothing. Storing the whole build and writing
    the output run with only young collections, and the thresholds are back after."""
    seen: dict[str, bool] = {}
    store, write = Repository.store, write_tree

    def spied_store(self: Repository, built: Build) -> str | None:
        seen["store"] = _full_collections_paused()
        return store(self, built)

    def spied_write(*args: Any, **kwargs: Any) -> Any:
        seen["write"] = _full_collections_paused()
        return write(*args, **kwargs)

    monkeypatch.setattr(Repository, "store", spied_store)
    monkeypatch.setattr(render_command, "write_tree", spied_write)
    before = gc.get_threshold()
    assert cli.main(["-C", str(example_repo), "render", "--out", str(tmp_path / "out")]) == 0
    assert seen == {"store": True, "write": True}
    assert gc.get_threshold() == before


def test_a_config_error_is_reported_alone(example_repo: Path) -> None:
    """Against the defaults a config error leaves, every spec naming an environment or a
    profile would get an error that is not its own."""
    config = example_repo / "servegen.yaml"
    config.write_text(config.read_text() + "flux_interval: 1m\n")  # an unknown key
    with pytest.raises(InvalidInputError) as caught:
        build(example_repo)
    shown = [str(d) for d in caught.value.diagnostics]
    lines = config.read_text().count("\n")
    assert len(shown) == 1  # the example specs name environments the defaults lack
    assert shown[0].startswith(f"servegen.yaml:{lines}:1: error: flux_interval: unknown field")


def test_a_file_name_that_is_not_utf8_is_an_error_with_the_cache_on(example_repo: Path) -> None:
    """The build's cache keys hold every spec file's path: such a name crashed them."""
    assert buildcache.enabled()
    folder = os.fsencode(example_repo / "specs")
    with open(os.path.join(folder, b"caf\xe9.yaml"), "wb") as handle:
        handle.write((example_repo / "specs" / "vllm" / "qwen-cpu.yaml").read_bytes())
    with pytest.raises(InvalidInputError) as caught:
        build(example_repo)
    [diag] = caught.value.diagnostics
    assert (diag.path, diag.line, diag.col) == ("specs/caf\udce9.yaml", 1, 1)
    assert "file or folder name contains \\udce9" in str(diag)
