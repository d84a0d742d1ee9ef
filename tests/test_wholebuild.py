"""Whole builds in the build cache (generator/wholebuild.py): a hit reads the head
alone, a damaged section is a miss, and one changed spec builds on the latest build."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import buildcache, cli, outtree, pipeline, spool, wholebuild
from generator import write as write_module
from generator.buildcache import json_pieces
from generator.errors import Diagnostic, InvalidInputError
from generator.load import spec_files
from generator.outindex import digest, index_path, tree_digest
from generator.pipeline import build
from generator.render import ModelRender, summary
from generator.validate import load_config
from generator.write import MANIFEST, manifest_bytes, stale_paths, write_tree
from tests.cacheutil import Counting, entries, head, no_render, no_validation, passing_files
from tests.incrementalutil import one_shot, tree


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Counting:
    return Counting.installed(monkeypatch)


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
    assert isinstance(again.files, wholebuild.StoredFiles) and again.tree is not None
    out = example_repo / "output"
    write_tree(out, again.files, tree=again.tree)
    before = tree(out)
    stats = write_tree(out, _Untouchable(again.files), tree=again.tree)
    assert not stats.changed and stats.unchanged == len(again.files)
    assert stale_paths(out, _Untouchable(again.files), tree=again.tree) == []
    assert tree(out) == before == {**again.files, MANIFEST: manifest_bytes(again.files)}


def _render(repo: Path, *extra: str) -> int:
    return cli.main(["-C", str(repo), "render", *extra])


def test_a_cold_build_finds_an_output_that_holds_its_tree_by_stats_alone(
    example_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _render(example_repo) == 0
    time.sleep(0.02)  # a later timestamp granule than the index
    shutil.rmtree(buildcache.cache_dir())  # a new servegen version, a cleared cache
    built = build(example_repo)
    assert built.tree == tree_digest({p: digest(d) for p, d in built.files.items()})
    shutil.rmtree(buildcache.cache_dir())
    capsys.readouterr()
    monkeypatch.setattr(write_module, "_write_delta", no_render)  # holds() answers first
    monkeypatch.setattr(write_module, "read_output", no_render)
    assert _render(example_repo) == 0
    assert "0 written, 0 removed" in capsys.readouterr().out


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
    real_load_build = wholebuild.load_build

    def miss_then_edit(key: str, rebuild: wholebuild.Rebuild) -> object:
        # The whole-build key was just computed from `before`; the build reads `after`.
        spec.write_text(after)
        return real_load_build(key, rebuild)

    monkeypatch.setattr(wholebuild, "load_build", miss_then_edit)
    assert b"maxReplicas: 4" in b"".join(build(example_repo).files.values())
    monkeypatch.setattr(wholebuild, "load_build", real_load_build)
    spec.write_text(before)
    assert build(example_repo).files == build(example_repo, keep_objects=True).files


def test_a_build_from_a_relative_root_is_found_again(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`servegen render` without -C builds Path("."): its whole build must be found by
    the next run from the same folder, not stored under paths cut one character short."""
    monkeypatch.chdir(example_repo)
    first = build(Path("."))
    monkeypatch.setattr(pipeline, "Repository", no_validation)  # the whole build, or fail
    again = build(Path("."))
    assert again.files == first.files


# --- a whole-build hit reads the entry's head alone ----------------------------------------


def _whole_build_entry() -> Path:
    (entry,) = [path for path in entries() if "notes" in head(path)]
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

    monkeypatch.setattr(wholebuild._Stored, "_read", unread)
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
    lengths = [length for length, _ in head(entry)["sections"]]  # type: ignore[attr-defined]
    start = data.index(b"\n") + 1 + sum(lengths[:section])
    data[start + lengths[section] // 2] ^= 0x01  # one bit, same length
    entry.write_bytes(bytes(data))
    again = build(example_repo)
    assert isinstance(again.files, wholebuild.StoredFiles)  # the head was a hit
    assert dict(again.files) == expected.files
    assert [m.name for m in again.models] == [m.name for m in expected.models]
    assert entry.read_bytes() != data  # deleted, and stored anew by the rebuild
    assert dict(build(example_repo).files) == expected.files


@pytest.mark.parametrize("prefix", [outtree.FLUX_PREFIX, "models/", "clusters/dev/", "none/", ""])
def test_one_folders_digests_are_those_of_every_file_under_it(
    example_repo: Path, prefix: str
) -> None:
    """digests_under() decodes the paths section without making every record a span:
    the same digests as the whole listing's, whether or not the spans are known yet."""
    expected = build(example_repo, keep_objects=True).files
    wanted = {p: digest(d) for p, d in expected.items() if p.startswith(prefix)}
    build(example_repo)
    fresh = build(example_repo).files
    assert isinstance(fresh, wholebuild.StoredFiles) and not fresh.stored.spans_known
    assert fresh.digests_under(prefix) == wanted
    assert not fresh.stored.spans_known  # (the records were not all made spans)
    fresh.digests()
    assert fresh.stored.spans_known and fresh.digests_under(prefix) == wanted
    assert (prefix == "none/") == (wanted == {})


def test_one_folders_digests_from_a_damaged_paths_section_are_the_rebuilds(
    example_repo: Path,
) -> None:
    expected = build(example_repo, keep_objects=True).files
    flux = {p: digest(d) for p, d in expected.items() if outtree.in_flux(p)}
    build(example_repo)
    entry = _whole_build_entry()
    data = bytearray(entry.read_bytes())
    lengths = [length for length, _ in head(entry)["sections"]]  # type: ignore[attr-defined]
    data[data.index(b"\n") + 1 + lengths[0] + lengths[1] // 2] ^= 0x01  # in the paths
    entry.write_bytes(bytes(data))
    again = build(example_repo).files
    assert isinstance(again, wholebuild.StoredFiles)
    assert flux and again.digests_under(outtree.FLUX_PREFIX) == flux
    assert again.stored.rebuilt


@pytest.mark.parametrize("processes", ["one", "two"])
def test_a_spec_key_is_none_for_what_the_loader_must_judge(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, processes: str
) -> None:
    """A symlink, a FIFO (never opened for a blocking read) and a file over the size
    limit each leave the whole build to the loader, also when a forked child reads the
    half of the files it is in."""
    monkeypatch.setattr(wholebuild, "_MIN_SPLIT", 2)
    monkeypatch.setenv("SERVEGEN_JOBS", "2" if processes == "two" else "1")
    specs = list(spec_files(example_repo, "specs"))
    digests = wholebuild.spec_digests(example_repo, specs)
    assert digests == [
        (rel, wholebuild.spec_digest((example_repo / rel).read_bytes())) for rel in specs
    ]
    assert wholebuild.repository_key("b", example_repo, specs) is not None
    os.mkfifo(example_repo / "specs/fifo.yaml")
    assert wholebuild.repository_key("b", example_repo, [*specs, "specs/fifo.yaml"]) is None
    (example_repo / "specs/fifo.yaml").unlink()
    (example_repo / "specs/link.yaml").symlink_to(example_repo / specs[0])
    assert wholebuild.repository_key("b", example_repo, [*specs, "specs/link.yaml"]) is None
    (example_repo / "specs/big.yaml").write_bytes(b"#" * ((1 << 20) + 1))
    assert wholebuild.repository_key("b", example_repo, ["specs/big.yaml", *specs]) is None
    assert wholebuild.repository_key("b", example_repo, [*specs, "specs/gone.yaml"]) is None


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


def _reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The spec files a build reads from here on (each file's path, relative)."""
    read: list[str] = []
    original = pipeline.read_spec

    def recording(root: Path, path: Path) -> tuple[bytes, object, bool]:
        read.append(path.relative_to(root).as_posix())
        return original(root, path)

    monkeypatch.setattr(pipeline, "read_spec", recording)
    return read


def _as_built_afresh(again: pipeline.Build, repo: Path) -> None:
    """`again` is what a build from scratch of `repo` gives, and it was stored."""
    expected = build(repo, keep_objects=True)
    assert dict(again.files) == expected.files
    assert list(again.models) == [summary(m) for m in expected.models]
    assert again.notes == expected.notes and again.warnings == expected.warnings
    assert again.object_count() == expected.object_count()
    assert again.tree == tree_digest({path: digest(data) for path, data in expected.files.items()})
    hit = build(repo)  # a whole-build hit now: the entry stored reads back the same
    assert isinstance(hit.files, wholebuild.StoredFiles)
    assert dict(hit.files) == expected.files and hit.notes == expected.notes
    assert list(hit.models) == list(again.models) and hit.warnings == again.warnings


def test_one_changed_spec_is_rendered_against_the_latest_build(
    example_repo: Path, renders: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_replicas is in no summary: only that model's files change, nothing else is
    checked or laid out again, and the result is what a build from scratch gives."""
    build(example_repo)
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: 4")
    renders.names.clear()
    with monkeypatch.context() as patched:
        _no_full_fill(patched)
        patched.setattr(pipeline, "cluster_files", no_render)
        patched.setattr(pipeline, "duplicate_objects", no_render)
        build(example_repo)
        # Again on the build just made, with files of another length this time.
        _edit_spec(example_repo, "max_replicas: 4", "max_replicas: 12")
        again = build(example_repo)
    assert renders.names == ["nomic-embed", "nomic-embed"]
    _as_built_afresh(again, example_repo)


def test_an_edit_that_changes_no_output_file_copies_all_but_the_sources(
    example_repo: Path, renders: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(example_repo)
    (before,) = [head(p) for p in entries() if "sections" in head(p)]
    _edit_spec(example_repo, "scales to zero when idle", "scales to zero when idle (a note)")
    renders.names.clear()
    with monkeypatch.context() as patched:
        patched.setattr(wholebuild.Latest, "_swapped", no_render)  # no file swapped in
        again = build(example_repo)
    assert renders.names == ["nomic-embed"]
    expected = build(example_repo, keep_objects=True)
    assert dict(again.files) == expected.files
    assert (
        again.tree
        == before["tree"]
        == tree_digest({path: digest(data) for path, data in expected.files.items()})
    )
    (after,) = [h for h in map(head, entries()) if "sections" in h and h["key"] != before["key"]]
    assert after["sections"][:3] == before["sections"][:3]  # type: ignore[index]
    assert after["sections"][3] != before["sections"][3]  # type: ignore[index]
    assert (after["counts"], after["tree"]) == (before["counts"], before["tree"])
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
def test_a_change_beyond_its_own_files_reads_that_file_alone(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    """What spans every model is derived again, from the latest build's other files
    read back from it, not from their spec files or their own entries."""
    build(example_repo)
    _edit_spec(example_repo, old, new)
    with monkeypatch.context() as patched:
        _no_full_fill(patched)
        read = _reads(patched)
        again = build(example_repo)
    assert read == [NOMIC]
    _as_built_afresh(again, example_repo)


def test_a_changed_spec_that_collides_or_fails_is_reported_as_ever(example_repo: Path) -> None:
    build(example_repo)
    _edit_spec(example_repo, "name: nomic-embed", "name: bge-reranker")  # another's name
    with pytest.raises(InvalidInputError) as duplicate:
        build(example_repo)
    with pytest.raises(InvalidInputError) as afresh:
        build(example_repo, keep_objects=True)
    assert duplicate.value.diagnostics == afresh.value.diagnostics
    assert any("bge-reranker" in d.message for d in duplicate.value.diagnostics)
    _edit_spec(example_repo, "name: bge-reranker", "name: nomic-embed")
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: many")
    with pytest.raises(InvalidInputError) as invalid:
        build(example_repo)
    assert [d.path for d in invalid.value.diagnostics] == [NOMIC]


def test_added_and_removed_spec_files_are_built_on_the_latest_build(
    example_repo: Path, renders: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(example_repo)
    added = "specs/kubeai/copy.yaml"
    (example_repo / added).write_text(
        (example_repo / NOMIC).read_text().replace("nomic-embed", "nomic-copy")
    )
    (example_repo / "specs/vllm/whisper.yaml").unlink()
    renders.names.clear()
    with monkeypatch.context() as patched:
        _no_full_fill(patched)
        read = _reads(patched)
        again = build(example_repo)
    assert (read, renders.names) == ([added], ["nomic-copy"])
    _as_built_afresh(again, example_repo)
    (example_repo / added).rename(example_repo / "specs/vllm/moved.yaml")  # a file renamed
    with monkeypatch.context() as patched:
        _no_full_fill(patched)
        read = _reads(patched)
        again = build(example_repo)
    assert read == ["specs/vllm/moved.yaml"]
    _as_built_afresh(again, example_repo)


def test_an_added_file_that_takes_a_name_is_reported_as_a_fresh_build_does(
    example_repo: Path,
) -> None:
    build(example_repo)
    (example_repo / "specs/kubeai/copy.yaml").write_text((example_repo / NOMIC).read_text())
    with pytest.raises(InvalidInputError) as found:
        build(example_repo)
    with pytest.raises(InvalidInputError) as afresh:
        build(example_repo, keep_objects=True)
    assert found.value.diagnostics == afresh.value.diagnostics
    assert [d.message for d in found.value.diagnostics if d.path == NOMIC] == [
        "duplicate name 'nomic-embed': also defined at specs/kubeai/copy.yaml:4:7"
    ]


_WARNED = """\
kind: vllmserve-text
name: {name}
spec: {{url: "hf://o/{name}", image: "vllm/vllm-openai:v0.9.2"}}
"""


def test_files_with_warnings_and_several_specs_are_read_back_from_the_latest_build(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file's warnings and models (in the file's order, not the build's) are what it
    contributed: nothing is read again but the file that changed."""
    two = "specs/vllm/two.yaml"
    (example_repo / two).write_text(
        _WARNED.format(name="zz-old") + "---\n" + _WARNED.format(name="aa-old")
    )
    build(example_repo)
    assert [w.path for w in build(example_repo).warnings] == [two, two]
    _edit_spec(example_repo, "name: nomic-embed", "name: nomic-embed-2")
    with monkeypatch.context() as patched:
        _no_full_fill(patched)
        read = _reads(patched)
        again = build(example_repo)
    assert read == [NOMIC]
    assert [w.path for w in again.warnings] == [two, two]
    _as_built_afresh(again, example_repo)


def test_a_file_read_back_otherwise_than_it_contributed_is_read_again(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose models, read back, do not give its recorded contribution (here: one
    model's position moved) is not taken from the latest build, but read again."""
    build(example_repo)
    _edit_spec(example_repo, "name: nomic-embed", "name: nomic-embed-2")
    original = wholebuild.Latest.seeds
    whisper = "specs/vllm/whisper.yaml"

    def moved(self: wholebuild.Latest) -> dict[str, list[wholebuild.Seed]] | None:
        found = original(self)
        assert found is not None
        (seed,) = found[whisper]
        found[whisper] = [dataclasses.replace(seed, model=dataclasses.replace(seed.model, line=99))]
        return found

    monkeypatch.setattr(wholebuild.Latest, "seeds", moved)
    read = _reads(monkeypatch)
    again = build(example_repo)
    assert sorted(read) == [NOMIC, whisper]
    _as_built_afresh(again, example_repo)


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
    lengths = [length for length, _ in head(entry)["sections"]]  # type: ignore[attr-defined]
    start = data.index(b"\n") + 1 + sum(lengths[:2])  # the bytes section
    data[start + 10] ^= 0x01
    entry.write_bytes(bytes(data))
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: 4")
    assert _render(example_repo, "--out", str(tmp_path / "fresh")) == 0
    expected = one_shot(example_repo, ())
    assert tree(tmp_path / "fresh") == expected


# --- how an entry is written -------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 2, 255, 256, 257, 512, 513, 1000])
def test_a_section_written_in_pieces_is_the_json_of_the_whole_list(count: int) -> None:
    items = [[f'models/m{i}/ü"{i}', i, {"k": [i, None, True]}] for i in range(count)]
    pieces = list(json_pieces(iter(items), wholebuild._json))
    assert b"".join(pieces) == wholebuild._json(items)
    assert all(isinstance(piece, bytes) for piece in pieces)


@pytest.mark.parametrize("count", [0, 1, 2, 7, 100])
def test_a_section_of_texts_written_in_pieces_is_their_json_list(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wholebuild, "_WRITE_BATCH", 16)  # a piece every text or two
    texts = [wholebuild._json({"n": i, "s": "ü" * i}) for i in range(count)]
    pieces = list(wholebuild._list_pieces(iter(texts)))
    assert b"".join(pieces) == wholebuild._json([json.loads(t) for t in texts])
    assert (len(pieces) > 1) == (count > 1)  # written as the batch fills
    assert all(len(piece) >= 16 for piece in pieces[:-1])


@pytest.mark.parametrize("count", [0, 1, 2, 7])
def test_a_list_of_texts_reads_back_item_by_item_with_where_each_lies(count: int) -> None:
    texts = [wholebuild._json({"n": i, "s": 'ü\u2028\\"' * i, "l": [i, {}]}) for i in range(count)]
    listed = b"".join(wholebuild._list_pieces(iter(texts)))
    found = list(wholebuild._list_items(listed))
    assert [value for value, _, _ in found] == [json.loads(t) for t in texts]
    assert [text for _, _, text in found] == texts
    assert [listed[at : at + len(text)] for _, at, text in found] == texts


@pytest.mark.parametrize(
    "listed",
    [b"", b"[", b"{}", b"[1,]", b"[1 ,2]", b"[1]x", b"[1][2]", b"[1,,2]", b"[1", b" [1]"],
)
def test_what_is_not_a_list_of_texts_is_refused(listed: bytes) -> None:
    with pytest.raises(ValueError):
        list(wholebuild._list_items(listed))


def test_a_stored_text_or_file_damaged_after_it_was_read_back_is_not_taken(
    example_repo: Path,
) -> None:
    """The entry changed in place since its sections were checked: a text read again
    is refused (DamagedEntryError), a file is what a build without the entry gives."""
    expected = build(example_repo, keep_objects=True)
    build(example_repo)
    config, _ = load_config(example_repo)
    repository = pipeline.Repository(example_repo, config)
    latest = pipeline._latest(repository, ())
    assert latest is not None
    seeds = latest.seeds()
    assert seeds is not None
    (seed,) = seeds[NOMIC]
    path = next(iter(seed.files))
    assert seed.files[path] == expected.files[path]
    assert seed.text.spool.read_span(seed.text) == buildcache.model_text(seed.model)
    entry = _whole_build_entry()
    with entry.open("r+b") as handle:  # in place: the open entry sees it
        for span in (seed.text, seed.files.spans()[path]):
            assert isinstance(span, spool.Span)
            handle.seek(span.offset)
            handle.write(bytes(b ^ 1 for b in handle.read(4)))
    damaged = entry.read_bytes()
    with pytest.raises(buildcache.DamagedEntryError):
        seed.text.spool.read_span(seed.text)
    assert seed.files[path] == expected.files[path]  # built again without the entry
    assert entry.read_bytes() != damaged  # deleted, and stored anew by that build
    assert dict(build(example_repo).files) == expected.files


def _stored_in_windows(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Mapping[str, bytes], wholebuild.StoredFiles, list[str]]:
    """The example's files as a build stored them, read in windows of 64 bytes from the
    first file on; and the sections read whole from then on."""
    built = build(example_repo)
    expected = dict(built.files)
    wholebuild.store_build("w" * 64, built.models, expected, built.notes, (), ())
    found = wholebuild.load_build("w" * 64, lambda: (built.models, expected))
    assert found is not None and isinstance(found.files, wholebuild.StoredFiles)
    monkeypatch.setattr(wholebuild._Stored, "_ONE_BY_ONE", 0)
    monkeypatch.setattr(wholebuild._Stored, "_WINDOW", 64)
    whole: list[str] = []
    read = wholebuild._Stored._read

    def recorded(self: wholebuild._Stored, name: str) -> bytes:
        whole.append(name)
        return read(self, name)

    monkeypatch.setattr(wholebuild._Stored, "_read", recorded)
    return expected, found.files, whole


def test_files_read_in_the_entry_s_order_come_from_windows_never_the_whole_section(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, files, whole = _stored_in_windows(example_repo, monkeypatch)
    assert sorted(expected) == list(files)  # the entry's order is the paths' order
    for _ in range(2):  # a commit hashes every file, then hands each to git
        assert {path: files[path] for path in files} == expected
    assert whole == ["paths"]
    assert files.stored._windows > 2 * len(files) // 10  # many windows: 64 bytes each


# The repository is only read: the same for every example.
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.randoms(use_true_random=False))
def test_files_read_in_any_order_are_the_stored_bytes_and_the_section_is_read_once(
    example_repo: Path, order: random.Random
) -> None:
    with pytest.MonkeyPatch.context() as patched:
        expected, files, whole = _stored_in_windows(example_repo, patched)
        paths = list(expected) * 3
        order.shuffle(paths)
        assert all(files[path] == expected[path] for path in paths)
        assert whole.count("bytes") <= 1 and whole.count("paths") == 1


def test_a_damaged_file_read_from_a_window_is_built_again(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, files, _ = _stored_in_windows(example_repo, monkeypatch)
    entry = buildcache.entry_path("w" * 64)
    start, end, _ = files.stored.spans()["README.md"]  # type: ignore[index]
    offset = files.stored.offset("bytes")
    with entry.open("r+b") as handle:  # in place: the open entry sees it
        handle.seek(offset + (start + end) // 2)
        handle.write(bytes(b ^ 1 for b in handle.read(1)))
    assert {path: files[path] for path in files} == expected
    assert not entry.exists()  # deleted once found damaged


def test_a_contribution_reads_warnings_as_validation_reports_them() -> None:
    """Sorted, each once: how a file's warnings read back from a whole build."""
    first = Diagnostic("specs/a.yaml", 2, 3, "spec.image", "old image", "warning")
    second = Diagnostic("specs/a.yaml", 9, 1, "serve.args", "idle GPUs", "warning")
    assert wholebuild.contribution((), [second, first, second], ()) == wholebuild.contribution(
        (), [first, second], ()
    )
    assert wholebuild.contribution((), [first], ()) != wholebuild.contribution((), [second], ())


def test_a_build_that_cannot_spool_its_sections_is_not_stored(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    built = build(example_repo)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))  # no temp folder
    tree = wholebuild.store_build("s" * 64, built.models, built.files, built.notes, (), ())
    assert tree == tree_digest({path: digest(data) for path, data in built.files.items()})
    assert wholebuild.load_build("s" * 64, lambda: pytest.fail("rebuilt")) is None
    assert not (tmp_path / "gone").exists()


def test_a_stored_build_reads_back_whole_from_its_pieces(example_repo: Path) -> None:
    built = build(example_repo)
    sources = [
        wholebuild.Source(f"specs/{i}.yaml", bytes([i % 256]) * 32, f"c{i}") for i in range(300)
    ]
    tree = wholebuild.store_build(
        "k" * 64, built.models, built.files, built.notes, (), built.warnings, sources
    )
    found = wholebuild.load_build("k" * 64, lambda: pytest.fail("rebuilt"))
    assert found is not None and found.tree == tree == tree_digest(
        {path: digest(data) for path, data in built.files.items()}
    )
    assert list(found.models) == list(built.models)
    assert dict(found.files) == dict(built.files)
    assert isinstance(found.files, wholebuild.StoredFiles)
    listed = json.loads(found.files.stored._read("sources"))
    assert listed == [[s.rel, s.digest.hex(), s.contribution] for s in sources]


# --- the paths section of a delta: only the swapped records are written anew -------------

# Few characters, so that paths often start alike ("a", "ab"), and JSON's own ones among
# them; and any text at all.
_PATH = st.text('ab"\\],[', min_size=1, max_size=4) | st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(
    records=st.dictionaries(_PATH, st.integers(0, 1 << 40), min_size=1, max_size=12),
    data=st.data(),
)
def test_replacing_records_in_the_text_is_encoding_the_new_list(
    records: dict[str, int], data: st.DataObject
) -> None:
    """Paths with quotes, backslashes, brackets, commas and control characters: the
    spliced section is byte for byte `_json` of the list with those records replaced,
    wherever they stand (first, last, next to each other)."""
    listed: list[list[object]] = [
        [path, length, digest(path.encode()).hex()] for path, length in records.items()
    ]
    chosen = data.draw(st.sets(st.sampled_from(sorted(records)), min_size=1))
    new = {path: [path, records[path] + 1, digest(path.encode() * 2).hex()] for path in chosen}
    expected = [new.get(str(record[0]), record) for record in listed]
    spliced = wholebuild._replace_records(wholebuild._json(listed), new)
    assert spliced == wholebuild._json(expected)


def test_a_value_edit_stores_the_paths_section_a_full_encoding_would(example_repo: Path) -> None:
    """The delta's paths section, spliced, is what encoding every record gives, and its
    records name every file of the build with its digest, in order."""
    build(example_repo)
    _edit_spec(example_repo, "max_replicas: 3", "max_replicas: 4")
    changed = build(example_repo)
    assert isinstance(changed.files, wholebuild.StoredFiles)
    assert changed.files.changes() is not None  # made from the latest build
    listed = changed.files.stored._read("paths")
    records = json.loads(listed)
    assert listed == wholebuild._json(records)
    expected = build(example_repo, keep_objects=True).files
    assert [path for path, _, _ in records] == list(dict(changed.files)) == sorted(expected)
    assert [(length, bytes.fromhex(hexed)) for _, length, hexed in records] == [
        (len(data), digest(data)) for data in (expected[path] for path, _, _ in records)
    ]


def _contribution_as_json(found: buildcache.CachedFile) -> str:
    """A contribution as its definition reads: one JSON text of the whole, each model
    named by the digest of its summary's JSON."""
    text = wholebuild._json(
        [
            [dataclasses.astuple(n) for n in found.names],
            [dataclasses.astuple(w) for w in sorted(set(found.warnings))],
            [
                [
                    digest(wholebuild._json(buildcache.model_to_json(c.model))).hex(),
                    sorted(c.files),
                    sorted(c.skipped.items()),
                ]
                for c in found.models
            ],
        ]
    )
    return hashlib.sha256(text).hexdigest()


def test_a_contribution_from_model_texts_is_the_digest_of_the_whole_json(
    example_repo: Path,
) -> None:
    """Whether each model's text digest is given or made, as the definition reads."""
    for found in passing_files(example_repo):
        want = _contribution_as_json(found)
        texts = buildcache.with_texts(found).models
        given = ((c.model, c.files, c.skipped, digest(c.text or b"")) for c in texts)
        made = ((c.model, c.files, c.skipped, None) for c in found.models)
        for models in (given, made):
            assert wholebuild.contribution(found.names, found.warnings, models) == want


def test_a_contribution_changes_with_any_model_text() -> None:
    """A model named by another text digest is another contribution: the digest stands
    for the whole summary."""
    model = ModelRender("a", "specs/a.yaml", 1, 1, "kubeai-text", (), {})
    first = wholebuild.contribution((), (), [(model, ["models/a/x.yaml"], {}, None)])
    other = digest(b"another text")
    second = wholebuild.contribution((), (), [(model, ["models/a/x.yaml"], {}, other)])
    assert first != second


def test_a_build_stored_with_its_model_texts_is_the_same_entry(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The models' texts a worker made (held, or in a spool) make the same bytes as
    texts made from the summaries here."""
    built = build(example_repo)
    texts = [buildcache.model_text(model) for model in built.models]
    spooled = spool.spool()
    assert spooled is not None
    given: list[list[spool.Span | bytes | None]] = [
        [None] * len(texts),
        list(texts),
        [spooled.append(text) for text in texts],
        [None if number % 2 else text for number, text in enumerate(texts)],
    ]
    stored = []
    for number, known in enumerate(given):
        monkeypatch.setattr(buildcache, "cache_dir", lambda n=number: tmp_path / str(n))
        wholebuild.store_build(
            "t" * 64, built.models, built.files, built.notes, (), built.warnings, (), known
        )
        stored.append(buildcache.entry_path("t" * 64).read_bytes())
    assert len(set(stored)) == 1
    assert wholebuild.load_build("t" * 64, lambda: pytest.fail("rebuilt")) is not None


def test_each_model_s_files_are_grouped_as_the_listing_gives_them(example_repo: Path) -> None:
    """_model_files(): every file under models/<name>/ with its place and digest, by
    model, in the paths section's order; the other files left out."""
    build(example_repo)
    config, _ = load_config(example_repo)
    latest = pipeline._latest(pipeline.Repository(example_repo, config), ())
    assert latest is not None
    stored = latest._stored
    reader = wholebuild._EntryReader(stored)
    expected: dict[str, dict[str, spool.Span | bytes]] = {}
    offset = stored.offset("bytes")
    for path, length, file_digest in stored.listing():
        folder = outtree.model_folder_of(path)
        if folder is not None:
            span = spool.Span(reader, offset, length, file_digest)
            expected.setdefault(folder, {})[path] = span
        offset += length
    found = wholebuild._model_files(reader, stored)
    assert found == expected
    assert [list(files) for files in found.values()] == [list(f) for f in expected.values()]
    assert all(type(span) is spool.Span for files in found.values() for span in files.values())
    assert len(expected) == len(latest.build.models)
