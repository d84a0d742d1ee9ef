"""Output files kept in a temporary file (generator/spool.py): read back as they were,
and stored in a whole-build entry byte for byte as files held in memory are."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from generator import spool, wholebuild
from generator.outindex import digest
from generator.pipeline import build
from tests.cacheutil import entries

FILES = {
    "models/b/base/x.yaml": b"b: 1\n",
    "models/b/overlays/dev/kustomization.yaml": b"k: b\n" * 300,
    "models/a/base/x.yaml": b"",  # empty files take no room, and read back empty
    "models/a/base/y.yaml": "ü: 2\n".encode(),
}


def _resolved(pieces: list[bytes | tuple[int, int, int]]) -> bytes:
    """The bytes write_entry() writes for these pieces."""
    out = b""
    for piece in pieces:
        out += os.pread(piece[0], piece[2], piece[1]) if isinstance(piece, tuple) else piece
    return out


def test_spooled_files_read_back_as_they_were_in_path_order() -> None:
    made = spool.spool()
    assert made is not None
    first = made.put({p: d for p, d in FILES.items() if p.startswith("models/b/")})
    second = made.put({p: d for p, d in FILES.items() if p.startswith("models/a/")})
    assert dict(first) == {p: d for p, d in FILES.items() if p.startswith("models/b/")}
    assert list(second) == ["models/a/base/x.yaml", "models/a/base/y.yaml"]
    assert second["models/a/base/y.yaml"] == "ü: 2\n".encode()
    assert "models/a/base/x.yaml" in second and "models/b/base/x.yaml" not in second
    assert len(first) == 2 and dict(first.lengths()) == {p: len(d) for p, d in first.items()}
    assert second.digests() == {p: digest(d) for p, d in FILES.items() if "/a/" in p}


def test_a_merged_tree_is_sorted_and_its_pieces_are_runs_of_the_spool() -> None:
    made = spool.spool()
    assert made is not None
    spans = {**made.put({p: FILES[p] for p in FILES if "/b/" in p}).spans()}
    spans.update(made.put({p: FILES[p] for p in FILES if "/a/" in p}).spans())
    held = {"README.md": b"# index\n", "clusters/dev/kustomization.yaml": b"c: 1\n"}
    tree = spool.merged(spans, held)
    expected = dict(sorted({**FILES, **held}.items()))
    assert list(tree.items()) == list(expected.items())
    assert tree.digests() == {p: digest(d) for p, d in expected.items()}
    assert dict(tree.lengths()) == {p: len(d) for p, d in expected.items()}
    pieces = list(tree.pieces())
    assert _resolved(pieces) == b"".join(expected.values())
    # Each model's files are one run of the spool: two ranges, two held files.
    assert [type(piece) for piece in pieces] == [bytes, bytes, tuple, tuple]


def test_spooled_trees_are_equal_by_paths_and_digests_none_of_them_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = spool.spool()
    assert made is not None
    spans = {**made.put(FILES).spans()}
    held = {"README.md": b"# index\n"}
    tree = spool.merged(spans, held)
    monkeypatch.setattr(spool.Spool, "read_span", _no_read)
    assert tree == spool.merged(dict(spans), {"README.md": b"# index\n"})
    assert tree != spool.merged(spans, {"README.md": b"# other\n"})
    assert tree != spool.merged({**spans, **made.put({"more.yaml": b"m\n"}).spans()}, held)
    shifted = {**spans, "models/b/base/x.yaml": spans["models/a/base/y.yaml"]}
    assert tree != spool.merged(shifted, held)  # another span: another digest
    monkeypatch.undo()
    assert tree == {**FILES, **held} and tree != FILES  # a plain mapping: compared as one


def _no_read(_spool: spool.Spool, _span: spool.Span) -> bytes:
    raise AssertionError("a file was read")


def test_a_spool_over_another_file_reads_it_and_never_writes_or_closes_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "entry"
    path.write_bytes(b"head\nbody")
    fd = os.open(path, os.O_RDONLY)
    try:
        view = spool.Spool(fd)
        span = spool.Span(view, 5, 4, digest(b"body"))
        assert view.read_span(span) == b"body"
        assert spool.SpooledFiles({"x": span})["x"] == b"body"
        with pytest.raises(OSError, match="read-only"):
            view.put({"y": b"more"})
        with pytest.raises(OSError, match="read-only"):
            view.append(b"more")
        del view, span
        assert os.pread(fd, 4, 0) == b"head"  # still open: it was never the view's
    finally:
        os.close(fd)
    assert path.read_bytes() == b"head\nbody"


def test_no_temporary_folder_means_no_spool(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    assert spool.spool() is None


def test_a_whole_build_of_spooled_files_is_stored_as_one_of_bytes(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = build(example_repo)
    made = spool.spool()
    assert made is not None
    models = {p.split("/")[1] for p in built.files if p.startswith("models/")}
    spans: dict[str, spool.Span | bytes] = {}
    for name in sorted(models, reverse=True):  # spooled in another order than the tree's
        ours = {p: d for p, d in built.files.items() if p.startswith(f"models/{name}/")}
        spans.update(made.put(ours).spans())
    held = {p: d for p, d in built.files.items() if not p.startswith("models/")}
    tree = spool.merged(spans, held)
    assert list(tree) == list(built.files)
    args = (built.notes, (), built.warnings)
    with monkeypatch.context() as unread:  # the kernel copies them: none is read here
        unread.setattr(spool.Spool, "read", lambda *_: pytest.fail("a spooled file was read"))
        wholebuild.store_build("p" * 64, built.models, tree, *args)
    wholebuild.store_build("q" * 64, built.models, dict(built.files), *args)
    stored = {path.name[:1]: path.read_bytes() for path in entries()}
    assert stored["p"].replace(b"p" * 64, b"q" * 64) == stored["q"]
