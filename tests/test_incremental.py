"""IncrementalBuild without a watcher: each batch must leave exactly a one-shot render.

Every test compares the output folder with `build()` of the same tree, byte for byte,
and checks that an invalid state leaves the folder untouched.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from generator import incremental as incremental_module
from generator import outindex
from generator import write as write_module
from generator.errors import ServegenError
from generator.incremental import BatchResult, IncrementalBuild
from generator.pipeline import Repository, build
from tests.cacheutil import spied_loads
from tests.incrementalutil import add_env, one_shot, spec_text, tree


def empty_folders(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_dir() and not any(p.iterdir())]


def assert_rendered(repo: Path, crds: Iterable[Path], out: Path | None = None) -> None:
    folder = out or repo / "output"
    expected = one_shot(repo, crds)
    actual = tree(folder)
    assert sorted(actual) == sorted(expected)
    assert actual == expected
    assert empty_folders(folder) == []


@pytest.fixture
def crds(crds_dir: Path) -> list[Path]:
    return [crds_dir]


@pytest.fixture
def started(example_repo: Path, crds: list[Path]) -> IncrementalBuild:
    incremental = IncrementalBuild(example_repo, crds=crds)
    result = incremental.initial()
    assert result.ok, result.diagnostics
    assert_rendered(example_repo, crds)
    return incremental


def apply(incremental: IncrementalBuild, *paths: Path) -> BatchResult:
    return incremental.apply(paths)


def test_initial_build_equals_one_shot_and_reports_notes(
    example_repo: Path, crds: list[Path]
) -> None:
    stale = example_repo / "output" / "models" / "gone" / "base" / "kustomization.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("left over from an older render\n")
    result = IncrementalBuild(example_repo, crds=crds).initial()
    assert result.ok and result.full
    assert result.models == 10 and len(result.rendered) == 10
    assert "models/gone/base/kustomization.yaml" in result.removed
    assert_rendered(example_repo, crds)


def test_the_first_batch_takes_what_the_latest_whole_build_holds(
    example_repo: Path, crds: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a one-shot render stored the whole build, the first batch reads no spec
    file's entry and derives nothing: each file of the very bytes that build was made
    from is taken from it, its models' files left in the build's entry. It reports what
    a first batch without that build reports, and later batches still leave exactly a
    one-shot render."""
    plain = IncrementalBuild(example_repo, crds=crds).initial()  # no whole build yet
    build(example_repo, crds=tuple(crds))  # what `servegen render` stores
    loaded = spied_loads(monkeypatch)
    derived: list[bytes] = []
    real_derive = Repository._derive

    def derive(self: Repository, digest: bytes, *args: Any) -> Any:
        derived.append(digest)
        return real_derive(self, digest, *args)

    monkeypatch.setattr(Repository, "_derive", derive)
    incremental = IncrementalBuild(example_repo, crds=crds)
    result = incremental.initial()
    assert len(loaded) == 0 and derived == []
    assert (result.ok, result.full, result.models) == (True, True, 10)
    assert (result.changed, result.rendered) == (plain.changed, plain.rendered)
    assert result.written == () and result.removed == ()
    assert_rendered(example_repo, crds)
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    path.write_text(path.read_text().replace("max_replicas: 3", "max_replicas: 5"))
    derived.clear()  # (the one-shot render above derived every file again)
    edited = apply(incremental, path)
    assert edited.rendered == ("nomic-embed",) and len(derived) == 1
    assert_rendered(example_repo, crds)


def test_edit_renders_only_that_model(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    path.write_text(path.read_text().replace("max_replicas: 3", "max_replicas: 5"))
    result = apply(started, path)
    assert result.ok
    assert result.changed == ("specs/kubeai/nomic-embed.yaml",)
    assert result.rendered == ("nomic-embed",)
    assert result.written and all("nomic-embed" in p or "flux" in p for p in result.written)
    assert_rendered(example_repo, crds)


def test_a_batch_writes_by_the_trees_digest_hashing_only_new_bytes(
    example_repo: Path, crds: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watcher that holds its files' bytes knows each one's digest (hashed once per
    bytes object), so each tree has a digest: a one-spec edit swaps in that model's
    changed files alone, not a whole new tree swapped in through the spare folder."""
    incremental = IncrementalBuild(example_repo, crds=crds)  # no whole build: bytes held
    assert incremental.initial().ok
    hashed: list[bytes] = []
    real_digest = outindex.digest  # as incremental.py imports it

    def counted(data: bytes) -> bytes:
        hashed.append(data)
        return real_digest(data)

    relinked: list[Path] = []
    real_replace = write_module._replace_folder

    def replace_folder(out: Path, *args: Any) -> Any:
        relinked.append(out)
        return real_replace(out, *args)

    monkeypatch.setattr(incremental_module, "digest", counted)
    monkeypatch.setattr(write_module, "_replace_folder", replace_folder)
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    path.write_text(path.read_text().replace("max_replicas: 3", "max_replicas: 5"))
    result = apply(incremental, path)
    assert result.ok and result.written and relinked == []
    assert 0 < len(hashed) < len(tree(example_repo / "output")) / 2
    assert_rendered(example_repo, crds)


def test_a_hand_edit_in_the_output_is_repaired_by_the_next_batch(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    # The watcher knows what it wrote, but a file whose stat moved was written by
    # someone else: it is read, rewritten, and never recorded as servegen's bytes.
    edited = example_repo / "output" / "models" / "qwen-cpu" / "base" / "service-qwen-cpu.yaml"
    edited.write_text(edited.read_text() + "# hand edit\n")
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    path.write_text(path.read_text().replace("max_replicas: 3", "max_replicas: 5"))
    result = apply(started, path)
    assert result.ok and "models/qwen-cpu/base/service-qwen-cpu.yaml" in result.written
    assert_rendered(example_repo, crds)


def test_identical_bytes_change_nothing(started: IncrementalBuild, example_repo: Path) -> None:
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    path.write_bytes(path.read_bytes())
    generation = started.generation
    result = apply(started, path, example_repo / "specs" / "not-there.yaml")
    assert result.ok and result.changed == () and result.written == ()
    assert started.generation == generation


def test_broken_yaml_keeps_output_then_fix_renders(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    before = tree(example_repo / "output")
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    good = path.read_text()
    path.write_text(good.replace("serve:\n", "serve:\n  scaling: [unclosed\n"))
    result = apply(started, path)
    assert not result.ok and result.written == () and result.removed == ()
    assert str(result.diagnostics[0]).startswith("specs/kubeai/nomic-embed.yaml:")
    assert "invalid YAML" in str(result.diagnostics[0])
    assert tree(example_repo / "output") == before
    # Another file changes while the first is broken: still nothing is written.
    other = example_repo / "specs" / "kubeai" / "bge-reranker.yaml"
    other.write_text(other.read_text().replace("max_replicas: 2", "max_replicas: 4"))
    assert not apply(started, other).ok
    assert tree(example_repo / "output") == before
    path.write_text(good.replace("max_replicas: 3", "max_replicas: 7"))
    result = apply(started, path)
    assert result.ok and set(result.rendered) == {"nomic-embed"}
    assert_rendered(example_repo, crds)


def test_validation_error_is_positioned(started: IncrementalBuild, example_repo: Path) -> None:
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    text = path.read_text().replace("engine: OLlama", "engin: OLlama")
    path.write_text(text)
    line = text.splitlines().index("  engin: OLlama") + 1
    result = apply(started, path)
    assert not result.ok
    assert str(result.diagnostics[0]).startswith(
        f"specs/kubeai/nomic-embed.yaml:{line}:3: error: spec.engin: unknown field 'engin'"
    )


def test_fifo_spec_is_an_error_not_a_hang(started: IncrementalBuild, example_repo: Path) -> None:
    path = example_repo / "specs" / "pipe.yaml"
    os.mkfifo(path)
    result = apply(started, path)
    assert not result.ok
    assert str(result.diagnostics[0]).startswith("specs/pipe.yaml:1:1: error: not a regular file")


def test_duplicate_name_across_files_then_resolved(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    before = tree(example_repo / "output")
    copy = example_repo / "specs" / "copy.yaml"
    shutil.copy(example_repo / "specs" / "kubeai" / "nomic-embed.yaml", copy)
    result = apply(started, copy)
    assert not result.ok
    assert any("duplicate name 'nomic-embed'" in d.message for d in result.diagnostics)
    assert tree(example_repo / "output") == before
    copy.write_text(spec_text("nomic-embed-copy"))
    assert apply(started, copy).ok
    assert_rendered(example_repo, crds)


def test_delete_removes_files_and_empty_folders(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    path = example_repo / "specs" / "kubeai" / "bge-reranker.yaml"
    path.unlink()
    result = apply(started, path)
    assert result.ok and "models/bge-reranker/base/kustomization.yaml" in result.removed
    assert not (example_repo / "output" / "models" / "bge-reranker").exists()
    assert_rendered(example_repo, crds)


def test_rename_rewrites_the_source_headers(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    old = example_repo / "specs" / "kubeai" / "bge-reranker.yaml"
    new = example_repo / "specs" / "kubeai" / "reranker.yml"
    old.rename(new)
    result = apply(started, old, new)
    assert result.ok and result.rendered == ("bge-reranker",)
    assert_rendered(example_repo, crds)


def test_new_nested_folder_reported_as_one_path(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    # A folder moved in whole is one event: every file under it must be found.
    staging = example_repo / "elsewhere" / "team" / "deep"
    staging.mkdir(parents=True)
    (staging / "a.yaml").write_text(spec_text("model-a"))
    (staging / "b.yaml").write_text(spec_text("model-b"))
    (staging / ".hidden.yaml").write_text(spec_text("hidden"))
    (staging / "notes.txt").write_text("not a spec")
    target = example_repo / "specs" / "team"
    (example_repo / "elsewhere" / "team").rename(target)
    result = apply(started, target)
    assert result.ok and set(result.rendered) == {"model-a", "model-b"}
    assert_rendered(example_repo, crds)
    # ... and moved out again: only the folder is reported.
    target.rename(example_repo / "elsewhere" / "team")
    result = apply(started, target)
    assert result.ok and len(result.changed) == 2
    assert_rendered(example_repo, crds)


def test_hidden_folders_and_linked_folders_are_not_specs(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    hidden = example_repo / "specs" / ".drafts"
    hidden.mkdir()
    (hidden / "draft.yaml").write_text(spec_text("draft"))
    outside = example_repo / "linked-target"
    outside.mkdir()
    (outside / "linked.yaml").write_text(spec_text("linked"))
    link = example_repo / "specs" / "linked"
    link.symlink_to(outside, target_is_directory=True)
    result = apply(started, hidden / "draft.yaml", link, link / "linked.yaml")
    assert result.ok and result.changed == ()
    assert_rendered(example_repo, crds)


def test_symlinked_spec_follows_its_target(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    target = example_repo / "shared-spec.yaml"
    target.write_text(spec_text("shared", replicas=2))
    link = example_repo / "specs" / "shared.yaml"
    link.symlink_to(Path("..") / target.name)
    assert apply(started, link).ok
    assert_rendered(example_repo, crds)
    # The target is outside the spec folder: its change is never reported.
    target.write_text(spec_text("shared", replicas=9))
    result = apply(started)
    assert result.ok and result.changed == ("specs/shared.yaml",)
    assert_rendered(example_repo, crds)


def test_spec_folder_replaced_whole(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    specs = example_repo / "specs"
    shutil.rmtree(specs)
    (specs / "fresh").mkdir(parents=True)
    (specs / "fresh" / "only.yaml").write_text(spec_text("only"))
    result = apply(started, specs)
    assert result.ok and result.rendered == ("only",)
    assert_rendered(example_repo, crds)


def test_config_change_rebuilds_everything(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    add_env(example_repo)
    result = apply(started, example_repo / "servegen.yaml")
    assert result.ok and result.full and len(result.rendered) == 10
    assert "servegen.yaml" in result.changed
    assert any(p.startswith("clusters/staging/") for p in result.written)
    assert_rendered(example_repo, crds)


def test_config_warning_still_renders(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    # An image outside the supported vLLM range is a warning, not a broken config.
    config = example_repo / "servegen.yaml"
    config.write_text(config.read_text() + "vllm:\n  image: vllm/vllm-openai:v0.9.2\n")
    result = apply(started, config)
    assert result.ok and result.full and "servegen.yaml" in result.changed
    assert_rendered(example_repo, crds)


def test_comment_in_config_changes_nothing(started: IncrementalBuild, example_repo: Path) -> None:
    config = example_repo / "servegen.yaml"
    config.write_text("# a comment\n" + config.read_text())
    result = apply(started, config)
    assert result.ok and result.changed == () and result.rendered == ()


def test_broken_config_keeps_output_until_fixed(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    before = tree(example_repo / "output")
    config = example_repo / "servegen.yaml"
    good = config.read_text()
    config.write_text(good.replace("namespace: llm\n", "namespace: Not_Valid\n", 1))
    result = apply(started, config)
    assert not result.ok and result.diagnostics[0].path == "servegen.yaml"
    spec = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    spec.write_text(spec.read_text().replace("max_replicas: 3", "max_replicas: 6"))
    assert not apply(started, spec).ok  # the config is still broken
    assert tree(example_repo / "output") == before
    config.write_text(good)
    assert apply(started, config).ok
    assert_rendered(example_repo, crds)


def test_config_moves_output_and_specs(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    (example_repo / "specs").rename(example_repo / "serve-specs")
    config = example_repo / "servegen.yaml"
    config.write_text(config.read_text() + "specs: serve-specs\noutput: rendered\n")
    result = apply(started, config, example_repo / "specs", example_repo / "serve-specs")
    assert result.ok
    assert started.out == (example_repo / "rendered").resolve()
    assert_rendered(example_repo, crds, example_repo / "rendered")


def test_out_override(example_repo: Path, crds: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    incremental = IncrementalBuild(example_repo, out=out, crds=crds)
    assert incremental.initial().ok
    assert not (example_repo / "output").exists()
    assert_rendered(example_repo, crds, out)


def test_initial_build_of_an_invalid_repository_writes_nothing(
    example_repo: Path, crds: list[Path]
) -> None:
    spec = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    good = spec.read_text()
    spec.write_text("kind: kubeai-text\nname: [\n")
    incremental = IncrementalBuild(example_repo, crds=crds)
    result = incremental.initial()
    assert not result.ok and not (example_repo / "output").exists()
    spec.write_text(good)
    assert incremental.apply([spec]).ok
    assert_rendered(example_repo, crds)


def test_reset_rebuilds_from_scratch(
    started: IncrementalBuild, example_repo: Path, crds: list[Path]
) -> None:
    started.reset()
    result = started.apply([])
    assert result.ok and result.full and result.written == ()
    assert_rendered(example_repo, crds)


@pytest.mark.parametrize("seeded", [False, True], ids=["read", "seeded"])
def test_random_sequences_match_one_shot(
    example_repo: Path, crds: list[Path], seeded: bool
) -> None:
    """Random edits, breaks, fixes, renames, deletes and folder moves, checked each step;
    from a first batch that read every file, or took them from the latest whole build."""
    if seeded:
        build(example_repo, crds=tuple(crds))
    started = IncrementalBuild(example_repo, crds=crds)
    assert started.initial().ok
    rng = random.Random(7)
    specs = example_repo / "specs"
    names = [f"rand-{i}" for i in range(8)]
    for step in range(40):
        files = sorted(p for p in specs.rglob("*.y*ml") if p.is_file())
        action = rng.choice(["add", "edit", "break", "delete", "rename", "move"])
        touched: list[Path] = []
        if action == "add" or not files:
            folder = specs / rng.choice(["", "a", "a/b", "c"])
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{rng.choice(names)}-{step}.yaml"
            path.write_text(spec_text(f"{rng.choice(names)}-{step}", rng.randint(1, 9)))
            touched = [path]
        elif action == "edit":
            path = rng.choice(files)
            name = path.stem.replace("_", "-") + f"-e{step}"
            path.write_text(spec_text(name, rng.randint(1, 9)))
            touched = [path]
        elif action == "break":
            path = rng.choice(files)
            path.write_text(path.read_text() + "  : bad: [\n")
            touched = [path]
        elif action == "delete":
            path = rng.choice(files)
            path.unlink()
            touched = [path]
        elif action == "rename":
            path = rng.choice(files)
            new = path.with_name(f"r{step}-{path.name}")
            path.rename(new)
            touched = [path, new]
        else:
            folders = [p for p in specs.rglob("*") if p.is_dir()]
            if not folders:
                continue
            folder, new = rng.choice(folders), specs / f"moved-{step}"
            os.replace(folder, new)
            touched = [folder, new]
        before = tree(example_repo / "output")
        result = started.apply(touched)
        try:
            expected = one_shot(example_repo, crds)
        except ServegenError:
            assert not result.ok, f"step {step} ({action}): one-shot fails, batch did not"
            assert tree(example_repo / "output") == before
            for path in specs.rglob("*.y*ml"):  # heal, so the walk goes on
                if b": bad: [" in path.read_bytes():
                    path.write_text(spec_text(f"healed-{step}-{path.stem}"))
                    started.apply([path])
            continue
        assert result.ok, f"step {step} ({action}): {result.diagnostics}"
        assert tree(example_repo / "output") == expected, f"step {step} ({action})"
