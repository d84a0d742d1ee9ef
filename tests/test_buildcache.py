"""The persistent build cache: reused across builds, keyed by content, never trusted blindly."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator import buildcache, pipeline, version
from generator.config import Config
from generator.errors import InvalidInputError, RenderError, UnknownEnvironmentError
from generator.incremental import IncrementalBuild
from generator.load import SourceFile
from generator.pipeline import build
from generator.render import render_spec
from generator.validate import FileResult, validate_file
from generator.write import MANIFEST, manifest_bytes
from runtimes.base import Endpoint
from tests.cacheutil import Counting, entries, head, no_render, no_validation, passing_files
from tests.conftest import REPO_ROOT
from tests.incrementalutil import one_shot, tree


def _model_entries() -> list[Path]:
    """The spec files' entries (each example file holds one spec)."""
    return [path for path in entries() if "names" in head(path)]


def _forget_whole_builds() -> None:
    """Leave only the spec files' entries, so a build must read every spec file."""
    for path in entries():
        if "notes" in head(path):
            path.unlink()


def test_a_second_build_reuses_every_model(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(example_repo)
    assert len(_model_entries()) == len(first.models)
    monkeypatch.setattr(pipeline, "render_spec", no_render)
    # Validated afresh: only the whole-build entry is gone, every model is reused.
    _forget_whole_builds()
    second = build(example_repo)
    assert second.files == first.files
    assert second.models == first.models
    assert second.notes == first.notes


def test_cluster_files_are_reused_while_what_they_list_is_unchanged(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(example_repo)
    _forget_whole_builds()
    monkeypatch.setattr(pipeline, "cluster_files", no_render)
    assert build(example_repo).files == first.files
    spec = example_repo / "specs/kubeai/nomic-embed.yaml"
    spec.write_text(spec.read_text().replace("nomic-embed", "nomic-embed-2"))
    with pytest.raises(RenderError, match="rendered again"):  # the catalog lists it
        build(example_repo)


def test_a_changed_spec_is_rendered_again(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(example_repo)
    spec = example_repo / "specs/kubeai/nomic-embed.yaml"
    spec.write_text(spec.read_text() + "\n# a comment changes the bytes\n")
    rendered: list[str] = []
    original = render_spec  # what pipeline.render_spec names

    def counting(spec: object, config: object) -> object:
        result = original(spec, config)  # type: ignore[arg-type]
        rendered.append(result.name)
        return result

    monkeypatch.setattr(pipeline, "render_spec", counting)
    build(example_repo)
    assert rendered == ["nomic-embed"]


def test_a_config_change_invalidates_everything(example_repo: Path) -> None:
    build(example_repo)
    config = example_repo / "servegen.yaml"
    config.write_text(config.read_text() + "\n# changed\n")
    before = set(_model_entries())
    # The config's comments do not change what it means: same key.
    build(example_repo)
    assert set(_model_entries()) == before
    config.write_text(config.read_text().replace("namespace:", "namespace: other\n#", 1))
    changed = build(example_repo)
    assert len(set(_model_entries()) - before) == len(changed.models)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: re.sub(rb'"key":"[0-9a-f]{64}"', b'"key":"' + b"0" * 64 + b'"', data, count=1),
        lambda data: b"\xff\xfe",
        lambda data: data + b"x",
    ],
    ids=["truncated", "other key", "garbage", "extended"],
)
def test_a_damaged_entry_is_a_miss(example_repo: Path, damage: object) -> None:
    first = build(example_repo)
    for entry in entries():
        entry.write_bytes(damage(entry.read_bytes()))  # type: ignore[operator]
    assert build(example_repo).files == first.files


def test_an_entry_is_used_only_under_its_own_key(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Swapping two entries' contents (same file names) makes both misses."""
    first = build(example_repo)
    a, b = _model_entries()[:2]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    _forget_whole_builds()  # else that one entry answers without reading the others
    assert build(example_repo).files == first.files
    assert json.loads(a.read_bytes())["key"] == a.stem  # stored again, correctly


def test_keep_objects_and_no_cache_bypass_it(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(example_repo, keep_objects=True)
    assert entries() == []
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")
    build(example_repo)
    assert entries() == []


def test_an_unwritable_cache_only_costs_time(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(buildcache, "cache_dir", lambda: blocker / "builds")
    expected = build(example_repo, keep_objects=True).files
    assert build(example_repo).files == expected


def test_nothing_changed_skips_validation_too(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(example_repo)
    monkeypatch.setattr(pipeline, "validate_file", no_validation)
    again = build(example_repo)
    assert again.files == first.files
    assert again.models == first.models
    assert again.notes == first.notes
    only_dev = build(example_repo, environment="dev")
    assert set(only_dev.files) < set(first.files)
    with pytest.raises(UnknownEnvironmentError, match="unknown environment 'nope'"):
        build(example_repo, environment="nope")


@pytest.mark.parametrize(
    ("change", "validated"),
    [
        (
            lambda repo: (repo / "specs/kubeai/new.yaml").write_text(
                (repo / "specs/kubeai/nomic-embed.yaml").read_text().replace("nomic-embed", "new")
            ),
            ["specs/kubeai/new.yaml"],
        ),
        (lambda repo: (repo / "specs/kubeai/nomic-embed.yaml").unlink(), []),
        (
            lambda repo: (repo / "specs/kubeai/nomic-embed.yaml").write_text("name: [broken\n"),
            [],  # not even parsed into documents: the YAML error comes first
        ),
        (
            lambda repo: (repo / "specs/kubeai/nomic-embed.yaml").write_text(
                (repo / "specs/kubeai/nomic-embed.yaml").read_text() + "# a comment\n"
            ),
            ["specs/kubeai/nomic-embed.yaml"],
        ),
    ],
    ids=["added", "removed", "broken", "commented"],
)
def test_only_changed_spec_files_are_validated_again(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, change: object, validated: list[str]
) -> None:
    build(example_repo)
    change(example_repo)  # type: ignore[operator]
    seen: list[str] = []
    real = validate_file  # what pipeline.validate_file names

    def counting(source: SourceFile, config: Config) -> FileResult:
        seen.append(source.path)
        return real(source, config)

    monkeypatch.setattr(pipeline, "validate_file", counting)
    try:
        again = build(example_repo)
    except InvalidInputError as exc:
        assert [d.path for d in exc.diagnostics] == ["specs/kubeai/nomic-embed.yaml"]
        assert seen == validated
    else:
        assert seen == validated
        assert again.files == build(example_repo, keep_objects=True).files  # uncached


def test_a_linked_spec_file_is_never_reused(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a symlink points at is for the loader to judge, every time."""
    spec = example_repo / "specs/kubeai/nomic-embed.yaml"
    target = example_repo / "nomic.yaml"
    target.write_bytes(spec.read_bytes())
    spec.unlink()
    spec.symlink_to(Path("..") / ".." / target.name)  # relative: as a clone has it
    build(example_repo)
    monkeypatch.setattr(pipeline, "validate_file", no_validation)
    with pytest.raises(AssertionError, match="validated again"):
        build(example_repo)


@pytest.mark.parametrize("specs", [True, False], ids=["examples", "no spec folder (a warning)"])
def test_validate_reports_the_same_from_the_cache(
    example_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    specs: bool,
) -> None:
    from generator.cli import main

    if not specs:
        shutil.rmtree(example_repo / "specs")
    first_code = main(["-C", str(example_repo), "validate"])
    first = capsys.readouterr()
    monkeypatch.setattr(pipeline, "validate_file", no_validation)
    second_code = main(["-C", str(example_repo), "validate"])
    second = capsys.readouterr()
    assert (second_code, second.out, second.err) == (first_code, first.out, first.err)
    assert first_code == 0
    assert ("warning" in first.out + first.err) != specs


def test_the_code_key_follows_library_versions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another jinja2 release first on sys.path (as a new install would be) is another key."""
    before = buildcache.code_digest()
    (tmp_path / "jinja2-999.dist-info").mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    version._dist_infos.cache_clear()
    buildcache.code_digest.cache_clear()
    try:
        assert buildcache.code_digest() != before
    finally:
        version._dist_infos.cache_clear()
        buildcache.code_digest.cache_clear()


# --- one build path: IncrementalBuild (watch) shares the cache with build() ----------------


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Counting:
    return Counting.installed(monkeypatch)


def test_a_fresh_watcher_reuses_what_another_process_rendered(
    example_repo: Path, renders: Counting
) -> None:
    """Each IncrementalBuild starts with nothing in memory, as a new `watch` process does."""
    first = IncrementalBuild(example_repo).initial()
    assert first.ok and len(renders.names) == first.models == 10
    renders.names.clear()
    (example_repo / "output").rename(example_repo / "output.first")
    second = IncrementalBuild(example_repo).initial()
    assert second.ok and second.models == 10
    assert renders.names == []  # every model came from the cache
    assert tree(example_repo / "output") == tree(example_repo / "output.first")
    assert second.notes == first.notes


def test_a_watcher_and_a_render_share_entries(example_repo: Path, renders: Counting) -> None:
    built = build(example_repo)
    assert len(renders.names) == len(built.models)
    renders.names.clear()
    assert IncrementalBuild(example_repo).initial().ok
    assert renders.names == []
    assert tree(example_repo / "output") == {**built.files, MANIFEST: manifest_bytes(built.files)}


def test_a_changed_spec_misses_in_a_fresh_watcher(example_repo: Path, renders: Counting) -> None:
    assert IncrementalBuild(example_repo).initial().ok
    spec = example_repo / "specs/kubeai/nomic-embed.yaml"
    spec.write_text(spec.read_text().replace("max_replicas: 3", "max_replicas: 4"))
    renders.names.clear()
    assert IncrementalBuild(example_repo).initial().ok
    assert renders.names == ["nomic-embed"]
    assert tree(example_repo / "output") == one_shot(example_repo, ())


def test_a_changed_config_misses_every_model(example_repo: Path, renders: Counting) -> None:
    assert IncrementalBuild(example_repo).initial().ok
    config = example_repo / "servegen.yaml"
    config.write_text(config.read_text().replace("labels: {environment: dev", "labels: {x: y", 1))
    renders.names.clear()
    result = IncrementalBuild(example_repo).initial()
    assert result.ok
    assert len(set(renders.names)) == len(renders.names) == result.models == 10


def test_a_changed_configured_crd_misses_every_model(
    example_repo: Path, renders: Counting, crds_dir: Path, tmp_path: Path
) -> None:
    crds = tmp_path / "crds"
    shutil.copytree(crds_dir, crds)
    built = build(example_repo, crds=[crds])
    renders.names.clear()
    build(example_repo, crds=[crds])
    assert renders.names == []  # the whole build was reused
    kubeai = crds / "kubeai.org_models.yaml"
    kubeai.write_text(kubeai.read_text() + "\n# another release\n")
    assert build(example_repo, crds=[crds]).files == built.files
    assert len(renders.names) == len(built.models)


def test_a_changed_bundled_crd_changes_the_code_key(
    monkeypatch: pytest.MonkeyPatch, crds_dir: Path
) -> None:
    """Bundled CRDs are part of servegen's own code digest, read byte for byte."""
    before = buildcache.code_digest()
    real = Path.read_bytes
    kubeai = (crds_dir / "kubeai.org_models.yaml").resolve()

    def edited(path: Path) -> bytes:
        data = real(path)
        return data + b"\n# edited\n" if path.resolve() == kubeai else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    buildcache.code_digest.cache_clear()
    try:
        assert buildcache.code_digest() != before
    finally:
        buildcache.code_digest.cache_clear()


def test_a_corrupted_model_entry_is_a_miss_for_a_watcher(
    example_repo: Path, renders: Counting
) -> None:
    assert IncrementalBuild(example_repo).initial().ok
    damaged = _model_entries()[0]
    name = json.loads(damaged.read_bytes())["models"][0]["model"]["name"]
    damaged.write_bytes(damaged.read_bytes()[:-20])
    renders.names.clear()
    (example_repo / "output").rename(example_repo / "output.first")
    assert IncrementalBuild(example_repo).initial().ok
    assert renders.names == [name]
    assert tree(example_repo / "output") == tree(example_repo / "output.first")


# --- eviction -------------------------------------------------------------------------------


def _age(path: Path, days: float) -> None:
    when = time.time() - days * buildcache.DAY
    os.utime(path, (when, when))


def test_prune_deletes_entries_unused_for_a_month(example_repo: Path) -> None:
    build(example_repo)
    old, recent, *_ = entries()
    _age(old, buildcache.MAX_AGE_DAYS + 1)
    _age(recent, buildcache.MAX_AGE_DAYS - 1)
    leftover = old.parent / ".abandoned.tmp"
    leftover.write_text("a crashed writer's")
    _age(leftover, 2)
    assert sorted(buildcache.prune()) == sorted([old, leftover])
    assert recent.exists() and not old.exists() and not leftover.exists()


def test_a_hit_marks_an_entry_used(example_repo: Path) -> None:
    build(example_repo)
    _forget_whole_builds()
    for entry in entries():
        _age(entry, buildcache.MAX_AGE_DAYS + 1)
    build(example_repo)  # reuses every model entry, which makes them recent again
    assert buildcache.prune() == []
    assert len(_model_entries()) == 10


def test_prune_keeps_the_folder_under_its_size_cap(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(example_repo)
    stored = entries()
    for days, entry in enumerate(stored):  # the first entry was used most recently
        _age(entry, days + 1)
    sizes = [entry.stat().st_size for entry in stored]
    monkeypatch.setattr(buildcache, "MAX_BYTES", sum(sizes[:3]))
    deleted = buildcache.prune()
    assert sorted(deleted) == sorted(stored[3:])
    assert entries() == sorted(stored[:3])


def test_pruning_runs_once_a_day_when_something_is_stored(
    example_repo: Path, tmp_path: Path
) -> None:
    buildcache.prune_daily.cache_clear()
    build(example_repo)  # the first store of this process prunes, and stamps the folder
    # The entry of the spec file edited below: no later build reads it (and so marks it
    # used) again. (The whole build is read again: it is the base of the next one.)
    (stale,) = [path for path in _model_entries() if "nomic-embed" in str(head(path)["names"])]
    _age(stale, buildcache.MAX_AGE_DAYS + 1)
    stamp = buildcache.cache_dir() / ".pruned"
    _age(stamp, 0.5)  # pruned half a day ago: not yet again
    buildcache.prune_daily.cache_clear()
    (example_repo / "specs/kubeai/nomic-embed.yaml").write_text(
        (example_repo / "specs/kubeai/nomic-embed.yaml").read_text() + "# new bytes\n"
    )
    build(example_repo)
    assert stale.exists()
    _age(stamp, 2)
    buildcache.prune_daily.cache_clear()
    (example_repo / "specs/kubeai/nomic-embed.yaml").write_text(
        (example_repo / "specs/kubeai/nomic-embed.yaml").read_text() + "# newer bytes\n"
    )
    build(example_repo)
    assert not stale.exists()
    assert stamp.stat().st_mtime > time.time() - 60
    buildcache.prune_daily.cache_clear()


def test_concurrent_runs_share_one_cache_safely(example_repo: Path, tmp_path: Path) -> None:
    """Three `render` processes at once, one cache folder: each writes every entry by
    rename, none reads half an entry, and a fourth run reuses what they stored."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "shared")}
    env.pop("SERVEGEN_NO_CACHE", None)

    def render(out: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "generator", "-C", str(example_repo), "render"]
        return subprocess.Popen([*command, "--out", str(out)], env=env, cwd=REPO_ROOT)

    runs = [render(tmp_path / f"out-{i}") for i in range(3)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0, 0]
    trees = [tree(tmp_path / f"out-{i}") for i in range(3)]
    assert trees[0] == trees[1] == trees[2] == one_shot(example_repo, ())
    builds = tmp_path / "shared" / "servegen" / "builds"
    assert not list(builds.rglob("*.tmp"))  # every write was renamed into place
    stored = {path: path.stat().st_mtime_ns for path in builds.rglob("*.json")}
    assert render(tmp_path / "out-again").wait(timeout=300) == 0
    assert tree(tmp_path / "out-again") == trees[0]
    assert {path: path.stat().st_mtime_ns for path in builds.rglob("*.json")} == stored


# --- how entries are encoded --------------------------------------------------------------


def _whole_text_key(build: str, what: str, inputs: object) -> str:
    """derived_key() as the sha256 of the whole canonical text at once."""
    text = json.dumps(
        inputs,
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=buildcache._fields,
    )
    return hashlib.sha256(f"{what}\0{build}\0{text}".encode()).hexdigest()


@pytest.mark.parametrize("count", [0, 1, 255, 256, 257, 600])
def test_a_derived_key_hashes_the_canonical_json_piece_by_piece(count: int) -> None:
    """Inputs marshal cannot write (here an Endpoint dataclass in each) are keyed by
    their canonical JSON, hashed a batch at a time."""
    endpoint = Endpoint("svc", "vllm", "ns", "/openai/v1", "ü", ("a",), ("chat",))
    models = [(f"m{i}", [("dev", endpoint), ("prod", None)]) for i in range(count)]
    last = ("last", [("dev", endpoint)])
    inputs_list: list[object] = [
        ([*models, last], [{"b": 1, "a": [2, 3]}]),
        (models, (endpoint,)),
        [*models, last],
        endpoint,
        ((endpoint,),),
    ]
    for inputs in inputs_list:
        expected = _whole_text_key("b" * 64, "cluster files", inputs)
        assert buildcache.derived_key("b" * 64, "cluster files", inputs) == expected
    assert buildcache.derived_key("b" * 64, "x", ([1], [2])) != buildcache.derived_key(
        "b" * 64, "x", ([1, 2], [])
    )


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


def _rebuilt(value: Any) -> Any:
    """`value` made again of other objects (every string too), equal to it."""
    if isinstance(value, str):
        return "".join(list(value)) + ""
    if isinstance(value, list | tuple):
        return type(value)(_rebuilt(item) for item in value)
    if isinstance(value, dict):
        return {_rebuilt(key): _rebuilt(item) for key, item in value.items()}
    return value


@given(_PLAIN, _PLAIN)
def test_plain_inputs_have_the_same_key_exactly_when_they_are_the_same_data(
    one: Any, other: Any
) -> None:
    """Plain data is keyed through marshal: by value, whatever objects hold it, and
    two different values never share a key."""
    key = buildcache.derived_key("b" * 64, "cluster files", one)
    assert buildcache.derived_key("b" * 64, "cluster files", _rebuilt(one)) == key
    if marshal.dumps(one, 2) != marshal.dumps(other, 2):
        assert buildcache.derived_key("b" * 64, "cluster files", other) != key


@pytest.mark.parametrize("count", [0, 1, 255, 256, 257, 600])
def test_a_change_anywhere_in_plain_inputs_changes_their_key(count: int) -> None:
    endpoint = {"name": "svc", "base_url": "/openai/v1", "model": "ü", "adapters": ("a",)}
    models = [(f"m{i}", [("dev", endpoint), ("prod", None)]) for i in range(count)]
    flux = [[{"b": 1, "a": [2, 3]}]]
    key = buildcache.derived_key("b" * 64, "cluster files", (models, flux))
    assert buildcache.derived_key("b" * 64, "cluster files", _rebuilt((models, flux))) == key
    others = [
        (models, [[{"b": 1, "a": [2, 4]}]]),
        ([*models, ("m", [])], flux),
        (models, flux, ()),
        [models, flux],
    ]
    if models:
        last = (models[-1][0], [("dev", {**endpoint, "adapters": ("b",)}), ("prod", None)])
        others += [([*models[:-1], last], flux), (models[:-1], flux)]
    for other in others:
        assert buildcache.derived_key("b" * 64, "cluster files", other) != key
    assert buildcache.derived_key("c" * 64, "cluster files", (models, flux)) != key
    assert buildcache.derived_key("b" * 64, "other", (models, flux)) != key


class _Text(str):
    """A str subclass: marshal refuses it."""


def test_inputs_marshal_cannot_write_are_keyed_by_their_canonical_json() -> None:
    unusual: list[object] = [[("m", [("dev", _Text("x"))])], ([("m", [])], [_Text("f")])]
    for inputs in unusual:
        expected = _whole_text_key("b" * 64, "cluster files", inputs)
        assert buildcache.derived_key("b" * 64, "cluster files", inputs) == expected


def test_stored_files_are_the_json_of_the_whole_entry() -> None:
    files = {"README.md": b'# "q" \xc3\xbc\n', "endpoints/dev.json": b"{}\n", "e": b""}
    buildcache.store_files("f" * 64, files)
    (path,) = entries()
    texts = {name: data.decode() for name, data in files.items()}
    assert path.read_bytes() == buildcache.compact_json({"key": "f" * 64, "files": texts})
    assert buildcache.load_files("f" * 64) == files


def test_files_that_are_not_text_are_not_stored() -> None:
    buildcache.store_files("g" * 64, {"a": b"ok\n", "b": b"\xff\xfe"})
    assert buildcache.load_files("g" * 64) is None
    assert entries() == []
    assert not [p for p in buildcache.cache_dir().rglob("*") if p.is_file()]  # no temp file


def _entry_as_json(key: str, found: buildcache.CachedFile) -> bytes:
    """What an entry held when it was made with one json.dumps of the whole."""
    entry = {
        "key": key,
        "names": [dataclasses.astuple(name) for name in found.names],
        "warnings": [dataclasses.astuple(w) for w in found.warnings],
        "models": [
            {
                "model": buildcache.model_to_json(c.model),
                "files": {path: data.decode() for path, data in c.files.items()},
                "skipped": dict(c.skipped),
            }
            for c in found.models
        ],
    }
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()


def test_an_entry_put_together_from_model_texts_is_the_json_of_the_whole(
    example_repo: Path,
) -> None:
    for found in passing_files(example_repo):
        want = _entry_as_json("k", found)
        assert buildcache.encode("k", found) == want
        assert buildcache.encode("k", buildcache.with_texts(found)) == want
        back = buildcache.decode("k", want)
        assert back is not None
        assert [(c.model, dict(c.files)) for c in back.models] == [
            (c.model, dict(c.files)) for c in found.models
        ]


def test_a_workers_message_carries_each_model_text_and_files(example_repo: Path) -> None:
    for found in passing_files(example_repo):
        blobs: list[bytes] = []
        head = buildcache.encode("k", found, blobs)
        assert head is not None
        back = buildcache.decode("k", head, blobs)
        assert back is not None
        assert (back.names, back.warnings) == (found.names, found.warnings)
        for got, sent in zip(back.models, found.models, strict=True):
            assert (got.model, dict(got.files), dict(got.skipped)) == (
                sent.model,
                dict(sent.files),
                dict(sent.skipped),
            )
            assert got.text == buildcache.model_text(sent.model)
        assert buildcache.decode("k", head, [*blobs, b"more"]) is None


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_JSON_VALUES)
def test_one_shared_encoder_writes_what_json_dumps_writes(value: object) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert buildcache.compact_json(value) == expected
    assert buildcache.compact_json(value) == expected  # nothing kept from the last call


# --- summaries read back --------------------------------------------------------------------

_TEXT = st.text(max_size=4)
_SCALAR = st.none() | st.booleans() | st.integers() | _TEXT
_ANY = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_TEXTS = st.lists(_TEXT, max_size=3)


@st.composite
def _objects(draw: st.DrawFn) -> dict[str, Any]:
    """An object as render.summary() keeps it, a KubeAI Model's "spec" included."""
    namespace = draw(st.none() | _TEXT)
    found = {
        "apiVersion": draw(_TEXT),
        "kind": draw(_TEXT),
        "metadata": {"name": draw(_TEXT), "namespace": namespace},
    }
    if draw(st.booleans()):
        found["spec"] = {"minReplicas": draw(st.integers(0, 3))}
    return found


@st.composite
def _environments(draw: st.DrawFn) -> dict[str, Any]:
    """An environment's summary as model_to_json() writes it, then changed in a few
    places: a value swapped for any JSON, a key dropped or added, keys reordered."""
    fields = ("name", "runtime", "namespace", "base_url", "model")
    endpoint: dict[str, Any] = {field: draw(_TEXT) for field in fields}
    endpoint.update({field: draw(_TEXTS) for field in ("adapters", "features", "paths")})
    version = {
        "model": draw(_TEXT),
        "revision": draw(st.none() | _TEXT),
        "image": draw(st.none() | _TEXT),
        "adapters": draw(_TEXTS),
    }
    found: dict[str, Any] = {
        "namespace": draw(_TEXT),
        "labels": draw(st.dictionaries(_TEXT, _TEXT, max_size=3)),
        "annotations": draw(st.dictionaries(_TEXT, _TEXT, max_size=2)),
        "objects": draw(st.lists(_objects(), max_size=3)),
        "endpoint": endpoint,
        "version": draw(st.none() | st.just(version)),
    }
    for _ in range(draw(st.integers(0, 2))):
        _change(draw, found)
    return found


def _change(draw: st.DrawFn, value: dict[str, Any]) -> None:
    """Change one of the mappings within `value` (or itself) in one way."""
    mappings = [value]
    for item in _walk(value):
        if isinstance(item, dict):
            mappings.append(item)
    target = draw(st.sampled_from(mappings))
    keys = list(target)
    how = draw(st.sampled_from(["swap", "drop", "add", "reorder"]))
    if how == "add" or not keys:
        target[draw(_TEXT)] = draw(_ANY)
    elif how == "swap":
        target[draw(st.sampled_from(keys))] = draw(_ANY)
    elif how == "drop":
        del target[draw(st.sampled_from(keys))]
    else:
        items = list(target.items())
        target.clear()
        target.update(reversed(items))


def _walk(value: Any) -> Iterator[Any]:
    children = value.values() if isinstance(value, dict) else value
    for child in children if isinstance(value, dict | list) else ():
        yield child
        yield from _walk(child)


def _shape(value: Any) -> Any:
    """`value` as types and values all the way down (dataclasses by their fields), each
    string with whether it is the interned one."""
    if isinstance(value, str):
        return ("str", value, value is sys.intern(value))
    if isinstance(value, dict):
        return ("dict", [(_shape(k), _shape(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(item) for item in value])
    if dataclasses.is_dataclass(value):
        fields = dataclasses.fields(value)
        return (type(value).__name__, [(f.name, _shape(getattr(value, f.name))) for f in fields])
    return (type(value).__name__, value)


def _both_readings(data: dict[str, Any]) -> tuple[Any, Any]:
    """The _shape() of what the generic and the usual reading make of `data` (or the
    type of the error each raises). Both are held until shaped: an interned string no
    longer referred to leaves the table, and another one equal to it would then look
    interned too."""
    found: list[Any] = []
    for reader in (buildcache._any_environment, buildcache._environment_from):
        try:
            found.append(reader(json.loads(json.dumps(data))))  # strings of its own
        except (TypeError, KeyError, AttributeError, ValueError) as error:
            found.append(type(error))
    generic, usual = (value if isinstance(value, type) else _shape(value) for value in found)
    return generic, usual


@settings(max_examples=400)
@given(_environments())
def test_an_environment_read_back_is_what_the_generic_reading_gives(data: dict[str, Any]) -> None:
    """Whatever its shape: the same summary, of the same types, its strings interned
    alike (or the same error)."""
    generic, usual = _both_readings(data)
    assert usual == generic


def test_summaries_as_render_makes_them_are_read_the_usual_way(example_repo: Path) -> None:
    """The generic reading is for other shapes only: not one model here needs it."""
    for found in passing_files(example_repo):
        for cached in found.models:
            environments = json.loads(buildcache.model_text(cached.model))["environments"]
            for env, data in environments.items():
                read = buildcache._usual_environment(data)
                assert _shape(read) == _shape(buildcache._any_environment(data))
                assert read == cached.model.environments[env]


_USUAL_ENVIRONMENT: dict[str, Any] = {
    "namespace": "llm-dev",
    "labels": {"app.kubernetes.io/name": "chat", "environment": "dev"},
    "annotations": {"servegen.io/owner": "team"},
    "objects": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": "other"}},
        {
            "apiVersion": "kubeai.org/v1",
            "kind": "Model",
            "metadata": {"name": "chat", "namespace": None},
            "spec": {"minReplicas": 0},
        },
    ],
    "endpoint": {
        "name": "chat",
        "runtime": "kubeai-text",
        "namespace": "llm-dev",
        "base_url": "http://chat/v1",
        "model": "chat",
        "adapters": ["a"],
        "features": ["TextGeneration"],
        "paths": ["/models"],
    },
    "version": {"model": "org/chat", "revision": None, "image": "img", "adapters": ["a=b"]},
}
_ODD_VALUES = ["s", None, 0, True, [], ["s"], [1], {}, {"k": "v"}, {"k": 1}]


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value within `value` (a mapping's key, a list's index)."""
    keys = list(value) if isinstance(value, dict) else []
    for key in range(len(value)) if isinstance(value, list) else keys:
        yield (*path, key)
        yield from _places(value[key], (*path, key))


def _single_changes() -> Iterator[dict[str, Any]]:
    """The usual environment with one thing changed: a value, a key, an order."""
    for *parent, key in [(None,), *_places(_USUAL_ENVIRONMENT)]:
        for how in [*range(len(_ODD_VALUES)), "drop", "add", "reorder"]:
            changed = copy.deepcopy(_USUAL_ENVIRONMENT)
            container: Any = changed
            for step in parent:
                container = container[step]
            if key is not None and how in ("drop", "add", "reorder"):
                container = container[key]
                if not isinstance(container, dict):
                    continue
            if isinstance(how, int):
                if key is None:
                    continue
                container[key] = copy.deepcopy(_ODD_VALUES[how])
            elif how == "drop":
                container.popitem()
            elif how == "add":
                container["extra"] = "x"
            else:
                items = list(container.items())
                container.clear()
                container.update(reversed(items))
            yield changed


def test_every_single_change_of_shape_is_read_as_the_generic_reading_does() -> None:
    changes = list(_single_changes())
    assert len(changes) > 400
    for data in changes:
        generic, usual = _both_readings(data)
        assert usual == generic, data


def test_the_stored_build_is_build_of_the_same_inputs_and_nothing_else(
    example_repo: Path, renders: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pipeline.stored_build(example_repo) is None  # nothing built yet: nothing built now
    assert renders.names == [] and entries() == []
    built = build(example_repo)
    stored = pipeline.stored_build(example_repo)
    assert stored is not None and stored.files == built.files
    assert [m.name for m in stored.models] == [m.name for m in built.models]
    spec = next((example_repo / "specs").rglob("*.yaml"))
    spec.write_bytes(spec.read_bytes() + b"# another byte\n")
    assert pipeline.stored_build(example_repo) is None
    spec.write_bytes(spec.read_bytes()[: -len(b"# another byte\n")])
    assert pipeline.stored_build(example_repo) is not None
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")
    assert pipeline.stored_build(example_repo) is None
