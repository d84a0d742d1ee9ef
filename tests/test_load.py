"""Reading spec files safely: encodings, sizes, symlinks, hidden entries, order."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator import cli
from generator.errors import Diagnostic
from generator.load import (
    MAX_FILE_BYTES,
    SourceFile,
    discover,
    listed_spec_files,
    load_config_file,
    load_specs,
    parse_source,
    read_source,
    spec_files,
)
from generator.pipeline import _walk_order
from generator.validate import validate_repository

SPEC = "kind: kubeai-text\nname: {name}\nspec:\n  url: hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0\n"


def spec(name: str) -> str:
    return SPEC.format(name=name)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def rels(root: Path, spec_dir: str = "specs") -> list[str]:
    return [p.relative_to(root).as_posix() for p in discover(root, spec_dir)]


def only_diagnostic(result: SourceFile | Diagnostic) -> Diagnostic:
    assert isinstance(result, Diagnostic), result
    return result


# --- bytes -> documents -------------------------------------------------------------------


def test_not_utf8_points_at_the_first_bad_byte() -> None:
    data = b"kind: kubeai-text\nname: tinyllama\n# caf\xe9 au lait\nspec: {}\n"
    diag = only_diagnostic(parse_source("specs/a.yaml", data))
    assert (diag.path, diag.line, diag.col, diag.json_path) == ("specs/a.yaml", 3, 6, "")
    assert "not valid UTF-8" in diag.message


def test_not_utf8_column_counts_characters_not_bytes() -> None:
    """Columns are characters, as in every other diagnostic (YAML marks count characters)."""
    # "# naïve caf" is 11 characters but 12 bytes: the bad byte is the 12th character.
    data = "kind: kubeai-text\n# naïve caf".encode() + b"\xe9\n"
    diag = only_diagnostic(parse_source("specs/a.yaml", data))
    assert (diag.line, diag.col) == (2, 12)


def test_utf16_is_not_utf8() -> None:
    data = "kind: kubeai-text\n".encode("utf-16")
    diag = only_diagnostic(parse_source("specs/a.yaml", data))
    assert (diag.line, diag.col) == (1, 1)
    assert "UTF-8" in diag.message


def test_utf8_bom_is_accepted() -> None:
    result = parse_source("specs/a.yaml", b"\xef\xbb\xbf" + spec("bom").encode())
    assert isinstance(result, SourceFile)
    assert result.documents[0].data["name"] == "bom"
    assert result.documents[0].position(("name",)) == (2, 7)


def test_nul_byte_is_refused_with_its_position() -> None:
    data = b"kind: kubeai-text\nname: tiny\x00llama\n"
    diag = only_diagnostic(parse_source("specs/a.yaml", data))
    assert (diag.line, diag.col) == (2, 11)
    assert "NUL" in diag.message


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    padding = "# " + "x" * 78 + "\n"
    big = spec("big") + padding * (MAX_FILE_BYTES // len(padding) + 1)
    assert len(big.encode()) > MAX_FILE_BYTES
    path = write(tmp_path / "specs" / "big.yaml", big)
    diag = only_diagnostic(read_source(tmp_path, path))
    assert (diag.path, diag.line, diag.col) == ("specs/big.yaml", 1, 1)
    assert str(MAX_FILE_BYTES) in diag.message
    assert only_diagnostic(parse_source("specs/big.yaml", big.encode())).message == diag.message


def test_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    text = spec("edge")
    text += "#" * (MAX_FILE_BYTES - len(text) - 1) + "\n"
    assert len(text.encode()) == MAX_FILE_BYTES
    result = read_source(tmp_path, write(tmp_path / "specs" / "edge.yaml", text))
    assert isinstance(result, SourceFile)


def test_yaml_syntax_error_becomes_a_positioned_diagnostic() -> None:
    diag = only_diagnostic(parse_source("specs/a.yaml", b"kind: kubeai-text\nname: [a\n"))
    assert diag.path == "specs/a.yaml"
    assert diag.line >= 2 and diag.col >= 1
    assert diag.message.startswith("invalid YAML: ")


def test_every_document_is_kept_with_its_index() -> None:
    data = (spec("a") + "---\n---\n" + spec("b")).encode()
    result = parse_source("specs/a.yaml", data)
    assert isinstance(result, SourceFile)
    names = [(d.index, d.data and d.data["name"]) for d in result.documents]
    assert names == [(0, "a"), (1, None), (2, "b")]
    assert result.documents[2].line == 7


# --- symlinks -----------------------------------------------------------------------------


def test_symlink_outside_the_repository_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    outside = write(tmp_path / "elsewhere" / "secret.yaml", spec("stolen"))
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "link.yaml").symlink_to(outside)
    loaded = load_specs(root, "specs")
    assert loaded.files == ()
    [diag] = loaded.diagnostics
    assert (diag.path, diag.line, diag.col) == ("specs/link.yaml", 1, 1)
    assert "outside the repository" in diag.message
    assert loaded.failed == {"specs/link.yaml"}


def test_relative_symlink_escaping_the_repository_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(tmp_path / "outside.yaml", spec("stolen"))
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "link.yaml").symlink_to(Path("..") / ".." / "outside.yaml")
    diag = only_diagnostic(read_source(root, root / "specs" / "link.yaml"))
    assert "outside the repository" in diag.message


def test_symlink_inside_the_repository_is_followed(tmp_path: Path) -> None:
    write(tmp_path / "shared" / "chat.yaml", spec("shared-chat"))
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "chat.yaml").symlink_to(Path("..") / "shared" / "chat.yaml")
    loaded = load_specs(tmp_path, "specs")
    assert loaded.diagnostics == ()
    [source] = loaded.files
    assert source.path == "specs/chat.yaml"
    assert source.documents[0].data["name"] == "shared-chat"


def test_symlink_to_an_absolute_path_inside_is_refused(tmp_path: Path) -> None:
    """git stores the text: in a clone elsewhere, or the export publish builds from, an
    absolute link leads out of the repository, so it is refused here too."""
    write(tmp_path / "shared" / "chat.yaml", spec("shared-chat"))
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "chat.yaml").symlink_to(tmp_path / "shared" / "chat.yaml")
    diag = only_diagnostic(read_source(tmp_path, tmp_path / "specs" / "chat.yaml"))
    assert diag.message.startswith("symlink to an absolute path: git stores it as written")


def test_symlink_climbing_out_and_back_in_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(root / "shared" / "chat.yaml", spec("shared-chat"))
    (root / "specs").mkdir()
    (root / "specs" / "chat.yaml").symlink_to(Path("..") / ".." / "repo" / "shared" / "chat.yaml")
    diag = only_diagnostic(read_source(root, root / "specs" / "chat.yaml"))
    assert diag.message.startswith("symlink climbs above the repository's top folder")
    # Each link of a chain is judged: a relative first link to an absolute second.
    (root / "specs" / "chat.yaml").unlink()
    (root / "specs" / "hop.yaml").symlink_to(root / "shared" / "chat.yaml")
    (root / "specs" / "chat.yaml").symlink_to("hop.yaml")
    diag = only_diagnostic(read_source(root, root / "specs" / "chat.yaml"))
    assert diag.message.startswith("symlink to an absolute path")


def test_a_spec_folder_linked_by_an_absolute_path_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "real" / "a.yaml", spec("a"))
    (tmp_path / "specs").symlink_to(tmp_path / "real")
    [diag] = load_specs(tmp_path, "specs").diagnostics
    assert diag.path == "specs" and diag.message.startswith("spec folder: symlink to an absolute")
    (tmp_path / "specs").unlink()
    (tmp_path / "specs").symlink_to("real")
    assert [f.path for f in load_specs(tmp_path, "specs").files] == ["specs/a.yaml"]


def test_a_nested_repository_among_the_specs_is_refused(tmp_path: Path) -> None:
    """A submodule's files are in none of this repository's commits: publish would leave
    out what validate and render read."""
    write(tmp_path / "specs" / "a.yaml", spec("a"))
    write(tmp_path / "specs" / "vendor" / "b.yaml", spec("b"))
    (tmp_path / "specs" / "vendor" / ".git").write_text("gitdir: ../../.git/modules/vendor\n")
    loaded = load_specs(tmp_path, "specs")
    assert [f.path for f in loaded.files] == ["specs/a.yaml"]
    [diag] = loaded.diagnostics
    assert (diag.path, diag.line, diag.col) == ("specs/vendor", 1, 1)
    assert diag.message.startswith("a git submodule or another repository")
    assert loaded.failed == {"specs/vendor"}


def test_symlink_to_a_directory_is_not_a_spec(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "dir.yaml").symlink_to(tmp_path / "other")
    # Listed as a directory entry by os.walk, so never read as a file.
    assert rels(tmp_path) == []


def test_dangling_symlink_is_reported(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "gone.yaml").symlink_to(tmp_path / "specs" / "missing.yaml")
    loaded = load_specs(tmp_path, "specs")
    assert [d.path for d in loaded.diagnostics] == ["specs/gone.yaml"]


def test_spec_folder_symlinked_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    write(tmp_path / "elsewhere" / "a.yaml", spec("a"))
    (root / "specs").symlink_to(tmp_path / "elsewhere")
    loaded = load_specs(root, "specs")
    assert loaded.files == ()
    [diag] = loaded.diagnostics
    assert diag.path == "specs" and "outside the repository" in diag.message


def test_config_symlinked_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    write(tmp_path / "servegen.yaml", "namespace: llm\n")
    (root / "servegen.yaml").symlink_to(tmp_path / "servegen.yaml")
    diag = load_config_file(root)
    assert isinstance(diag, Diagnostic)
    assert diag.path == "servegen.yaml" and "outside the repository" in diag.message


def test_missing_config_is_none(tmp_path: Path) -> None:
    assert load_config_file(tmp_path) is None


# --- discovery ----------------------------------------------------------------------------


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "specs" / "chat.yaml", spec("chat"))
    write(tmp_path / "specs" / ".draft.yaml", "not: [valid")
    write(tmp_path / "specs" / ".git" / "config.yaml", "not: [valid")
    write(tmp_path / "specs" / "team" / ".cache" / "old.yaml", "not: [valid")
    write(tmp_path / "specs" / "team" / "embed.yaml", spec("embed"))
    assert rels(tmp_path) == ["specs/chat.yaml", "specs/team/embed.yaml"]
    assert load_specs(tmp_path, "specs").diagnostics == ()


def test_yml_and_yaml_are_found_other_suffixes_are_not(tmp_path: Path) -> None:
    write(tmp_path / "specs" / "a.yaml", spec("a"))
    write(tmp_path / "specs" / "b.yml", spec("b"))
    for ignored in ("c.json", "d.yaml.bak", "README.md", "f.yaml~", "yaml"):
        write(tmp_path / "specs" / ignored, "not: [valid")
    assert rels(tmp_path) == ["specs/a.yaml", "specs/b.yml"]
    loaded = load_specs(tmp_path, "specs")
    assert [f.path for f in loaded.files] == ["specs/a.yaml", "specs/b.yml"]


@pytest.mark.parametrize(
    ("spec_dir", "files"),
    [
        ("specs", ["specs/a.yaml", "specs/b/c.yml", "specs/b/.d/e.yaml", "specs/ü/f.yaml"]),
        ("deploy/models", ["deploy/models/a.yaml", "deploy/models/x/y/z.yaml"]),
        (".", ["a.yaml", ".hidden/c.yaml", "specs/d.yaml", "team/b.yaml"]),
    ],
)
def test_spec_files_are_discover_relative_to_the_root(
    tmp_path: Path, spec_dir: str, files: list[str]
) -> None:
    """The string listing names what discover() lists, in its order, as the root-relative
    POSIX paths every key and message uses; also for specs at the repository's top."""
    for rel in files:
        write(tmp_path / rel, spec("a"))
    listed = list(spec_files(tmp_path, spec_dir))
    assert listed == [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path, spec_dir)]
    assert listed == [rel for rel in files if "/." not in f"/{rel}"]
    assert [tmp_path / rel for rel in listed] == list(discover(tmp_path, spec_dir))


def test_order_is_deterministic_and_sorted(tmp_path: Path) -> None:
    names = ["zeta.yaml", "alpha.yml", "Beta.yaml", "m/inner.yaml", "b/x.yaml", "a.yaml", "b.yaml"]
    for name in names:
        write(tmp_path / "specs" / name, spec(Path(name).stem.lower()))
    first = rels(tmp_path)
    # Files of a folder come before its sub-folders; both sorted by code point.
    assert first == [
        "specs/Beta.yaml",
        "specs/a.yaml",
        "specs/alpha.yml",
        "specs/b.yaml",
        "specs/zeta.yaml",
        "specs/b/x.yaml",
        "specs/m/inner.yaml",
    ]
    for _ in range(3):
        assert rels(tmp_path) == first
    loaded = load_specs(tmp_path, "specs")
    assert [f.path for f in loaded.files] == first


def test_order_does_not_depend_on_creation_order(tmp_path: Path) -> None:
    names = [f"s{i:02d}.yaml" for i in range(20)]
    one, two = tmp_path / "one", tmp_path / "two"
    for name in names:
        write(one / "specs" / name, spec(Path(name).stem))
    for name in reversed(names):
        write(two / "specs" / name, spec(Path(name).stem))
    assert rels(one) == rels(two) == [f"specs/{n}" for n in names]


def test_missing_spec_folder_is_empty(tmp_path: Path) -> None:
    loaded = load_specs(tmp_path, "specs")
    assert (loaded.files, loaded.diagnostics, loaded.failed) == ((), (), frozenset())


# --- through validation -------------------------------------------------------------------


def test_load_problems_reach_validation_and_other_files_still_validate(tmp_path: Path) -> None:
    write(tmp_path / "specs" / "good.yaml", spec("good"))
    write(tmp_path / "specs" / "latin1.yaml", b"kind: kubeai-text\nname: caf\xe9\n")
    write(tmp_path / "specs" / "nul.yml", b"kind: kubeai-text\x00\n")
    validated = validate_repository(tmp_path)
    got = [(d.path, d.line, d.col) for d in validated.diagnostics]
    assert got == [("specs/latin1.yaml", 2, 10), ("specs/nul.yml", 1, 18)]
    assert [s.name for s in validated.specs] == ["good"]
    assert validated.failed_files == {"specs/latin1.yaml", "specs/nul.yml"}


def test_config_problems_are_reported_on_servegen_yaml(tmp_path: Path) -> None:
    write(tmp_path / "servegen.yaml", b"namespace: llm\n\xff\n")
    write(tmp_path / "specs" / "good.yaml", spec("good"))
    validated = validate_repository(tmp_path)
    [diag] = validated.diagnostics
    assert (diag.path, diag.line, diag.col) == ("servegen.yaml", 2, 1)
    assert "servegen.yaml" in validated.failed_files


# --- hostile names and files --------------------------------------------------------------

INJECTED_FOLDER = (
    "x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: pwn, namespace: kube-system}\n"
)


@pytest.mark.parametrize("char", ["\n", "\r", "\x85", "\u2028", "\u2029", "\x1b", "\x7f", "\t"])
def test_spec_path_with_a_control_or_line_break_is_refused(tmp_path: Path, char: str) -> None:
    """Such a folder name was pasted raw into the header of every file it rendered."""
    write(tmp_path / "specs" / f"team{char}a" / "chat.yaml", spec("chat"))
    validated = validate_repository(tmp_path)
    [diag] = validated.diagnostics
    assert (diag.path, diag.line, diag.col) == (f"specs/team{char}a/chat.yaml", 1, 1)
    assert "control, line-break or unprintable character" in diag.message
    assert validated.specs == ()
    assert "\n" not in str(diag) and "\x1b" not in str(diag) and char not in str(diag)


def test_folder_name_cannot_add_an_object_to_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "specs" / INJECTED_FOLDER / "chat.yaml", spec("chat"))
    code = cli.main(["-C", str(tmp_path), "render"])
    err = capsys.readouterr().err
    assert code == 1
    assert not (tmp_path / "output").exists()
    # One line, escaped: the name can neither add output lines nor YAML documents.
    [line] = [ln for ln in err.splitlines() if "chat.yaml" in ln]
    assert line.startswith("specs/x\\n---\\napiVersion: v1\\nkind: ConfigMap")
    assert all(not ln.startswith(("apiVersion", "kind", "metadata")) for ln in err.splitlines())


def test_non_utf8_file_name_is_refused_not_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.yaml"), "w") as handle:
        handle.write(spec("cafe"))
    [diag] = validate_repository(tmp_path).diagnostics
    assert diag.path == "specs/caf\udce9.yaml"
    assert "\\udce9" in str(diag)


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    os.mkfifo(tmp_path / "specs" / "pipe.yaml")
    [diag] = load_specs(tmp_path, "specs").diagnostics
    assert (diag.path, diag.line, diag.col) == ("specs/pipe.yaml", 1, 1)
    assert "not a regular file" in diag.message


def test_character_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    os.mknod(tmp_path / "specs" / "zero.yaml", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    [diag] = load_specs(tmp_path, "specs").diagnostics
    assert (diag.path, diag.line, diag.col) == ("specs/zero.yaml", 1, 1)
    assert "not a regular file" in diag.message


def test_symlink_loop_is_a_positioned_error(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").symlink_to("b.yaml")
    (tmp_path / "specs" / "b.yaml").symlink_to("a.yaml")
    (tmp_path / "specs" / "loop").symlink_to(".")
    loaded = load_specs(tmp_path, "specs")
    assert [(d.path, d.line, d.col) for d in loaded.diagnostics] == [
        ("specs/a.yaml", 1, 1),
        ("specs/b.yaml", 1, 1),
    ]
    assert all("symlink loop" in d.message for d in loaded.diagnostics)


def _without_root_privileges() -> list[str]:
    """A prefix that makes permission bits apply to this test's servegen, even as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test unreadable files as root"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.parametrize("what", ["folder", "file"])
def test_unreadable_spec_folder_or_file_is_an_error(tmp_path: Path, what: str) -> None:
    """An unreadable team folder used to drop that team's models from output/ silently."""
    write(tmp_path / "specs" / "a" / "good.yaml", spec("good"))
    hidden = write(tmp_path / "specs" / "team" / "chat.yaml", spec("chat"))
    locked = hidden.parent if what == "folder" else hidden
    locked.chmod(0)
    try:
        done = subprocess.run(
            [
                *_without_root_privileges(),
                sys.executable,
                "-m",
                "generator",
                "-C",
                str(tmp_path),
                "render",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        locked.chmod(0o755)
    where = "specs/team" if what == "folder" else "specs/team/chat.yaml"
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{where}:1:1: error: cannot read" in done.stderr
    assert "Permission denied" in done.stderr
    assert not (tmp_path / "output").exists()


_PARTS = st.sampled_from(["specs", "a", ".hidden", "b.yaml", "c.yml", ".d.yaml", "e.txt", "é"])


@given(
    st.sets(st.lists(_PARTS, min_size=1, max_size=4).map("/".join), max_size=10),
    st.sampled_from(["specs", "specs/a", "."]),
)
@settings(max_examples=80, deadline=None)
def test_a_commits_listing_names_the_spec_files_a_walk_of_it_written_out_finds(
    paths: set[str], spec_dir: str
) -> None:
    """listed_spec_files() of a commit's files: what spec_files() lists once they are
    written out (hidden folders and files, other suffixes and other folders left out),
    in the walk's order once sorted by it."""
    files = {p for p in paths if not any(q.startswith(p + "/") for q in paths)}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for rel in files:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).touch()
        walked = list(spec_files(root, spec_dir))
    assert sorted(listed_spec_files(files, spec_dir), key=_walk_order) == walked
