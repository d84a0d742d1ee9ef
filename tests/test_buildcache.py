"""The persistent build cache: reused across builds, keyed by content, never trusted blindly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from generator import buildcache, cli, pipeline
from generator.config import Config
from generator.errors import InvalidInputError, RenderError
from generator.incremental import IncrementalBuild
from generator.load import SourceFile
from generator.outindex import digest, index_path, tree_digest
from generator.pipeline import build
from generator.render import ModelRender, render_spec, summary
from generator.validate import FileResult, ValidatedSpec, validate_file
from generator.write import MANIFEST, manifest_bytes, stale_paths, write_tree
from tests.conftest import REPO_ROOT
from tests.incrementalutil import one_shot, tree


def _entries() -> list[Path]:
    return sorted(buildcache.cache_dir().rglob("*.json"))


def _head(path: Path) -> dict[str, object]:
    """An entry's JSON (a whole build's: its first line; its files' bytes follow)."""
    head: dict[str, object] = json.loads(path.read_bytes().split(b"\n", 1)[0])
    return head


def _model_entries() -> list[Path]:
    """The spec files' entries (each example file holds one spec)."""
    return [path for path in _entries() if "names" in _head(path)]


def _forget_whole_builds() -> None:
    """Leave only the spec files' entries, so a build must read every spec file."""
    for path in _entries():
        if "notes" in _head(path):
            path.unlink()


def _no_render(*_: object) -> object:
    raise RenderError("rendered again")


def test_a_second_build_reuses_every_model(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(example_repo)
    assert len(_model_entries()) == len(first.models)
    monkeypatch.setattr(pipeline, "render_spec", _no_render)
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
    monkeypatch.setattr(pipeline, "cluster_files", _no_render)
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
    for entry in _entries():
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
    assert _entries() == []
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")
    build(example_repo)
    assert _entries() == []


def test_an_unwritable_cache_only_costs_time(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(buildcache, "cache_dir", lambda: blocker / "builds")
    expected = build(example_repo, keep_objects=True).files
    assert build(example_repo).files == expected


def _no_validation(*_: object) -> object:
    raise AssertionError("validated again")


def test_nothing_changed_skips_validation_too(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(example_repo)
    monkeypatch.setattr(pipeline, "validate_file", _no_validation)
    again = build(example_repo)
    assert again.files == first.files
    assert again.models == first.models
    assert again.notes == first.notes
    only_dev = build(example_repo, environment="dev")
    assert set(only_dev.files) < set(first.files)
    with pytest.raises(RenderError, match="unknown environment"):
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
    spec.symlink_to(target)
    build(example_repo)
    monkeypatch.setattr(pipeline, "validate_file", _no_validation)
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
    monkeypatch.setattr(pipeline, "validate_file", _no_validation)
    second_code = main(["-C", str(example_repo), "validate"])
    second = capsys.readouterr()
    assert (second_code, second.out, second.err) == (first_code, first.out, first.err)
    assert first_code == 0
    assert ("warning" in first.out + first.err) != specs


def test_the_code_key_follows_library_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    before = buildcache.code_digest()
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "999" if name == "jinja2" else real(name))
    buildcache.code_digest.cache_clear()
    try:
        assert buildcache.code_digest() != before
    finally:
        buildcache.code_digest.cache_clear()


# --- one build path: IncrementalBuild (watch) shares the cache with build() ----------------


class _Counting:
    """render_spec, counting the models it renders."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._render = render_spec  # what pipeline.render_spec names

    def __call__(self, spec: ValidatedSpec, config: Config) -> ModelRender:
        model = self._render(spec, config)
        self.names.append(model.name)
        return model


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> _Counting:
    counting = _Counting()
    monkeypatch.setattr(pipeline, "render_spec", counting)
    return counting


def test_a_fresh_watcher_reuses_what_another_process_rendered(
    example_repo: Path, renders: _Counting
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


def test_a_watcher_and_a_render_share_entries(example_repo: Path, renders: _Counting) -> None:
    built = build(example_repo)
    assert len(renders.names) == len(built.models)
    renders.names.clear()
    assert IncrementalBuild(example_repo).initial().ok
    assert renders.names == []
    assert tree(example_repo / "output") == {**built.files, MANIFEST: manifest_bytes(built.files)}


def test_a_changed_spec_misses_in_a_fresh_watcher(example_repo: Path, renders: _Counting) -> None:
    assert IncrementalBuild(example_repo).initial().ok
    spec = example_repo / "specs/kubeai/nomic-embed.yaml"
    spec.write_text(spec.read_text().replace("max_replicas: 3", "max_replicas: 4"))
    renders.names.clear()
    assert IncrementalBuild(example_repo).initial().ok
    assert renders.names == ["nomic-embed"]
    assert tree(example_repo / "output") == one_shot(example_repo, ())


def test_a_changed_config_misses_every_model(example_repo: Path, renders: _Counting) -> None:
    assert IncrementalBuild(example_repo).initial().ok
    config = example_repo / "servegen.yaml"
    config.write_text(config.read_text().replace("labels: {environment: dev", "labels: {x: y", 1))
    renders.names.clear()
    result = IncrementalBuild(example_repo).initial()
    assert result.ok
    assert len(set(renders.names)) == len(renders.names) == result.models == 10


def test_a_changed_configured_crd_misses_every_model(
    example_repo: Path, renders: _Counting, crds_dir: Path, tmp_path: Path
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
    example_repo: Path, renders: _Counting
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
    old, recent, *_ = _entries()
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
    for entry in _entries():
        _age(entry, buildcache.MAX_AGE_DAYS + 1)
    build(example_repo)  # reuses every model entry, which makes them recent again
    assert buildcache.prune() == []
    assert len(_model_entries()) == 10


def test_prune_keeps_the_folder_under_its_size_cap(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(example_repo)
    entries = _entries()
    for days, entry in enumerate(entries):  # the first entry was used most recently
        _age(entry, days + 1)
    sizes = [entry.stat().st_size for entry in entries]
    monkeypatch.setattr(buildcache, "MAX_BYTES", sum(sizes[:3]))
    deleted = buildcache.prune()
    assert sorted(deleted) == sorted(entries[3:])
    assert _entries() == sorted(entries[:3])


def test_pruning_runs_once_a_day_when_something_is_stored(
    example_repo: Path, tmp_path: Path
) -> None:
    buildcache.prune_daily.cache_clear()
    build(example_repo)  # the first store of this process prunes, and stamps the folder
    # The entry of the spec file edited below: no later build reads it (and so marks it
    # used) again. (The whole build is read again: it is the base of the next one.)
    (stale,) = [path for path in _model_entries() if "nomic-embed" in str(_head(path)["names"])]
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


# --- a whole-build hit against an up-to-date output folder -------------------------------


class _Untouchable(Mapping[str, bytes]):
    """A build's files whose bytes must not be looked at (paths may be)."""

    def __init__(self, files: Mapping[str, bytes]):
        self._paths = list(files)

    def __getitem__(self, path: str) -> bytes:
        raise AssertionError(f"the bytes of {path} were looked at")

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def test_an_up_to_date_output_is_found_by_the_tree_digest_alone(example_repo: Path) -> None:
    build(example_repo)  # stores the whole build
    again = build(example_repo)
    assert isinstance(again.files, buildcache.StoredFiles) and again.tree is not None
    out = example_repo / "output"
    write_tree(out, again.files, tree=again.tree)
    before = tree(out)
    stats = write_tree(out, _Untouchable(again.files), tree=again.tree)
    assert not stats.changed and stats.unchanged == len(again.files)
    assert stale_paths(out, _Untouchable(again.files), tree=again.tree) == []
    assert tree(out) == before == {**again.files, MANIFEST: manifest_bytes(again.files)}


def _render(repo: Path, *extra: str) -> int:
    return cli.main(["-C", str(repo), "render", *extra])


@pytest.mark.parametrize("when", ["later", "same granule"])
def test_render_check_finds_a_same_size_hand_edit(
    example_repo: Path, capsys: pytest.CaptureFixture[str], when: str
) -> None:
    assert _render(example_repo) == 0
    assert _render(example_repo) == 0  # a whole-build hit
    edited = example_repo / "output" / "README.md"
    recorded = edited.stat().st_mtime_ns
    data = edited.read_bytes()
    time.sleep(0.02 if when == "later" else 0)
    edited.write_bytes(data.replace(b"e", b"E", 1))
    assert len(edited.read_bytes()) == len(data) and edited.read_bytes() != data
    if when == "same granule":  # the edit kept every stat field, in the index's granule
        index = index_path(example_repo / "output")
        assert index is not None
        os.utime(edited, ns=(recorded, recorded))
        os.utime(index, ns=(recorded, recorded))
    capsys.readouterr()
    assert _render(example_repo, "--check") == 1
    assert f"{edited}: stale" in capsys.readouterr().err
    assert _render(example_repo) == 0
    assert edited.read_bytes() == data
    assert _render(example_repo, "--check") == 0


def test_a_spec_edited_while_building_is_not_stored_under_its_old_bytes(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = example_repo / "specs/kubeai/nomic-embed.yaml"
    before = spec.read_text()
    after = before.replace("max_replicas: 3", "max_replicas: 4")
    real_load_build = buildcache.load_build

    def miss_then_edit(key: str, rebuild: buildcache.Rebuild) -> object:
        # The whole-build key was just computed from `before`; the build reads `after`.
        spec.write_text(after)
        return real_load_build(key, rebuild)

    monkeypatch.setattr(buildcache, "load_build", miss_then_edit)
    assert b"maxReplicas: 4" in b"".join(build(example_repo).files.values())
    monkeypatch.setattr(buildcache, "load_build", real_load_build)
    spec.write_text(before)
    assert build(example_repo).files == build(example_repo, keep_objects=True).files


def test_a_build_from_a_relative_root_is_found_again(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`servegen render` without -C builds Path("."): its whole build must be found by
    the next run from the same folder, not stored under paths cut one character short."""
    monkeypatch.chdir(example_repo)
    first = build(Path("."))
    monkeypatch.setattr(pipeline, "Repository", _no_validation)  # the whole build, or fail
    again = build(Path("."))
    assert again.files == first.files


# --- a whole-build hit reads the entry's head alone ----------------------------------------


def _whole_build_entry() -> Path:
    (entry,) = [path for path in _entries() if "notes" in _head(path)]
    return entry


def test_nothing_changed_reads_neither_models_nor_files(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """render, render --check and validate with nothing changed: counts and notes come
    from the head; the output folder is proven up to date by its index."""
    assert _render(example_repo) == 0
    assert _render(example_repo) == 0  # the whole build's first hit stores the index
    capsys.readouterr()

    def unread(*_: object) -> bytes:
        raise AssertionError("a section was read")

    monkeypatch.setattr(buildcache._Stored, "_read", unread)
    assert _render(example_repo) == 0
    rendered = capsys.readouterr()
    assert "rendered 10 models" in rendered.err + rendered.out
    assert _render(example_repo, "--check") == 0
    assert cli.main(["-C", str(example_repo), "validate"]) == 0
    assert "10 specs valid" in "".join(capsys.readouterr())


@pytest.mark.parametrize("section", [0, 1, 2], ids=["models", "paths", "bytes"])
def test_a_section_damaged_after_the_head_is_a_miss_too(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, section: int
) -> None:
    """The head is whole, but a section's bytes are not what its digest says: found when
    the section is first read; the entry is deleted and the build done again."""
    expected = build(example_repo, keep_objects=True)
    build(example_repo)
    entry = _whole_build_entry()
    data = bytearray(entry.read_bytes())
    lengths = [length for length, _ in _head(entry)["sections"]]  # type: ignore[attr-defined]
    start = data.index(b"\n") + 1 + sum(lengths[:section])
    data[start + lengths[section] // 2] ^= 0x01  # one bit, same length
    entry.write_bytes(bytes(data))
    again = build(example_repo)
    assert isinstance(again.files, buildcache.StoredFiles)  # the head was a hit
    assert dict(again.files) == expected.files
    assert [m.name for m in again.models] == [m.name for m in expected.models]
    assert entry.read_bytes() != data  # deleted, and stored anew by the rebuild
    assert dict(build(example_repo).files) == expected.files


def test_a_spec_key_is_none_for_what_the_loader_must_judge(example_repo: Path) -> None:
    """A symlink, a FIFO (never opened for a blocking read) and a file over the size
    limit each leave the whole build to the loader."""
    specs = sorted((example_repo / "specs").rglob("*.yaml"))
    assert buildcache.repository_key("b", example_repo, specs) is not None
    fifo = example_repo / "specs/fifo.yaml"
    os.mkfifo(fifo)
    assert buildcache.repository_key("b", example_repo, [*specs, fifo]) is None
    fifo.unlink()
    link = example_repo / "specs/link.yaml"
    link.symlink_to(specs[0])
    assert buildcache.repository_key("b", example_repo, [*specs, link]) is None
    big = example_repo / "specs/big.yaml"
    big.write_bytes(b"#" * ((1 << 20) + 1))
    assert buildcache.repository_key("b", example_repo, [*specs, big]) is None


# --- one spec changed: the latest build of the repository is the base ----------------------

NOMIC = "specs/kubeai/nomic-embed.yaml"


def _edit_spec(repo: Path, old: str, new: str) -> None:
    spec = repo / NOMIC
    assert old in spec.read_text()
    spec.write_text(spec.read_text().replace(old, new))


def _no_full_fill(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if a build reads every spec file's entry (the path without a base)."""

    def refuse(*_: object) -> object:
        raise AssertionError("every spec file was read")

    monkeypatch.setattr(pipeline.Repository, "scan", refuse)


def test_one_changed_spec_is_rendered_against_the_latest_build(
    example_repo: Path, renders: _Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_replicas is in no summary: only that model's files change, nothing else is
    checked or laid out again, and the result is what a build from scratch gives."""
    build(example_repo)
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: 4")
    renders.names.clear()
    with monkeypatch.context() as patched:
        _no_full_fill(patched)
        patched.setattr(pipeline, "cluster_files", _no_render)
        patched.setattr(pipeline, "duplicate_objects", _no_render)
        build(example_repo)
        # Again on the build just made, with files of another length this time.
        _edit_spec(example_repo, "max_replicas: 4", "max_replicas: 12")
        again = build(example_repo)
    assert renders.names == ["nomic-embed", "nomic-embed"]
    expected = build(example_repo, keep_objects=True)
    assert dict(again.files) == expected.files
    assert list(again.models) == [summary(m) for m in expected.models]
    assert again.notes == expected.notes and again.warnings == expected.warnings
    assert again.object_count() == expected.object_count()
    assert again.tree == tree_digest({path: digest(data) for path, data in expected.files.items()})
    renders.names.clear()
    assert dict(build(example_repo).files) == expected.files  # now a whole-build hit
    assert renders.names == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("min_replicas: 0", "min_replicas: 1"),  # in the summary: Flux health checks read it
        ("name: nomic-embed", "name: nomic-embed-2"),  # its name, files and catalog entry
        ("# Embeddings", "\n# Embeddings"),  # its position, which diagnostics cite
    ],
    ids=["summary", "name", "position"],
)
def test_a_change_beyond_its_own_files_is_built_in_full(
    example_repo: Path, old: str, new: str
) -> None:
    build(example_repo)
    _edit_spec(example_repo, old, new)
    again = build(example_repo)
    expected = build(example_repo, keep_objects=True)
    assert dict(again.files) == expected.files
    assert again.notes == expected.notes
    assert [m.name for m in again.models] == [m.name for m in expected.models]
    assert [(m.path, m.line) for m in again.models] == [(m.path, m.line) for m in expected.models]


def test_a_changed_spec_that_collides_or_fails_is_reported_as_ever(example_repo: Path) -> None:
    build(example_repo)
    _edit_spec(example_repo, "name: nomic-embed", "name: bge-reranker")  # another's name
    with pytest.raises(InvalidInputError) as duplicate:
        build(example_repo)
    assert any("bge-reranker" in d.message for d in duplicate.value.diagnostics)
    _edit_spec(example_repo, "name: bge-reranker", "name: nomic-embed")
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: many")
    with pytest.raises(InvalidInputError) as invalid:
        build(example_repo)
    assert [d.path for d in invalid.value.diagnostics] == [NOMIC]


def test_added_and_removed_spec_files_are_built_in_full(example_repo: Path) -> None:
    build(example_repo)
    (example_repo / "specs/kubeai/copy.yaml").write_text(
        (example_repo / NOMIC).read_text().replace("nomic-embed", "nomic-copy")
    )
    (example_repo / "specs/vllm/whisper.yaml").unlink()
    expected = build(example_repo, keep_objects=True)
    assert dict(build(example_repo).files) == expected.files


def test_render_after_one_change_writes_that_model_only(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _render(example_repo) == 0
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: 4")
    capsys.readouterr()
    assert _render(example_repo) == 0
    assert "1 written, 0 removed" in capsys.readouterr().out
    assert tree(example_repo / "output") == one_shot(example_repo, ())
    assert _render(example_repo, "--check") == 0


def test_damaged_bytes_carried_into_the_next_build_are_still_found(
    example_repo: Path, tmp_path: Path
) -> None:
    """The next build copies unchanged files' bytes unread; each is checked against its
    digest when read, and a mismatch is a miss (built again), never written out."""
    build(example_repo)
    entry = _whole_build_entry()
    data = bytearray(entry.read_bytes())
    lengths = [length for length, _ in _head(entry)["sections"]]  # type: ignore[attr-defined]
    start = data.index(b"\n") + 1 + sum(lengths[:2])  # the bytes section
    data[start + 10] ^= 0x01
    entry.write_bytes(bytes(data))
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: 4")
    assert _render(example_repo, "--out", str(tmp_path / "fresh")) == 0
    expected = one_shot(example_repo, ())
    assert tree(tmp_path / "fresh") == expected
