"""Step 1 of the pipeline: find and read the config and spec files, safely.

Reading never trusts the repository: files are size-limited, must be UTF-8, and a
symlink that resolves outside the repository is refused rather than followed.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from generator.config import CONFIG_FILE
from generator.errors import Diagnostic, printable
from generator.yamlio import Document, YamlSyntaxError, load_documents

MAX_FILE_BYTES = 1 << 20
SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SourceFile:
    """A parsed YAML file: its repository-relative path and its documents."""

    path: str
    documents: tuple[Document, ...]


@dataclass(frozen=True)
class LoadResult:
    files: tuple[SourceFile, ...]
    diagnostics: tuple[Diagnostic, ...]
    failed: frozenset[str]


def file_error(path: str, message: str, line: int = 1, col: int = 1) -> Diagnostic:
    return Diagnostic(path=path, line=line, col=col, json_path="", message=message)


def is_spec_file(name: str) -> bool:
    return name.endswith(SPEC_SUFFIXES) and not name.startswith(".")


def discover(
    root: Path, spec_dir: str, onerror: Callable[[OSError], None] | None = None
) -> Iterator[Path]:
    """Every spec file under root/spec_dir, in a stable order; hidden entries skipped.

    `onerror` hears of folders that cannot be listed (they would otherwise vanish).
    """
    for rel in spec_files(root, spec_dir, onerror):
        yield root / rel


def spec_files(
    root: Path, spec_dir: str, onerror: Callable[[OSError], None] | None = None
) -> Iterator[str]:
    """The files discover() lists, as paths relative to `root` in POSIX form.

    Strings, no Path per file: a build that finds nothing changed still lists every
    spec file, and making and relativising a Path was most of that listing's cost.
    """
    base = root / spec_dir
    top = str(base)
    lead = base.relative_to(root).as_posix()
    lead = "" if lead == "." else f"{lead}/"
    for current, dirs, files in os.walk(top, onerror=onerror, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        below = current[len(top) + 1 :].replace(os.sep, "/")  # os.walk joins onto `top`
        folder = f"{lead}{below}/" if below else lead
        for nested in [d for d in dirs if os.path.lexists(f"{current}/{d}/.git")]:
            dirs.remove(nested)
            if onerror is not None:
                onerror(NestedRepository(f"{current}/{nested}"))
        for name in sorted(files):
            if is_spec_file(name):
                yield folder + name


def listed_spec_files(paths: Iterable[str], spec_dir: str) -> list[str]:
    """Of the files `paths` (relative to the repository root, POSIX form, as a commit
    lists its regular files), those spec_files() lists once they are written out: under
    `spec_dir`, no hidden folder on the way below it, a spec file's name. In the order
    given; spec_files() walks in the order of pipeline's _walk_order."""
    lead = "" if spec_dir == "." else f"{spec_dir}/"
    found = []
    for path in paths:
        if not path.startswith(lead):
            continue
        *folders, name = path[len(lead) :].split("/")
        if is_spec_file(name) and not any(folder.startswith(".") for folder in folders):
            found.append(path)
    return found


class NestedRepository(OSError):
    """A folder among the specs that is a git submodule or another repository: its files
    are in none of this repository's commits, so a publish (which builds a commit)
    would leave out what validate and render read. Refused, in both."""

    def __init__(self, path: str) -> None:
        super().__init__(
            errno.EISDIR,
            "a git submodule or another repository: its files are not in this "
            "repository's commits, so publish would leave them out; move the specs into "
            "this repository",
            path,
        )


def folder_problem(exc: OSError) -> str:
    """The message for a spec folder walk's error."""
    if isinstance(exc, NestedRepository):
        return str(exc.strerror)
    return f"cannot read folder: {exc.strerror or exc}"


def relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def read_source(root: Path, path: Path) -> SourceFile | Diagnostic:
    """Read and parse one file; any problem becomes one positioned diagnostic."""
    rel = relative(root, path)
    problem = name_problem(rel) or _unsafe_path(root, path)
    if problem:
        return file_error(rel, problem)
    try:
        data = _read_regular(path)
    except _NotReadable as exc:
        return file_error(rel, str(exc))
    except OSError as exc:
        return file_error(rel, f"cannot read file: {exc.strerror or exc}")
    return parse_source(rel, data)


class _NotReadable(Exception):
    """Not a file servegen reads: too large, or not a regular file."""


def _read_regular(path: Path) -> bytes:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then says what it is,
    # so a FIFO or a device (endless, or unbounded) is refused before anything is read.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotReadable("not a regular file (a FIFO, socket or device); remove it")
        if info.st_size > MAX_FILE_BYTES:
            raise _NotReadable(f"file is {info.st_size} bytes; the limit is {MAX_FILE_BYTES}")
        return handle.read(MAX_FILE_BYTES + 1)


def name_problem(rel: str) -> str | None:
    """Why a file or folder name cannot be used: it is copied into headers and messages."""
    if rel.isprintable():
        return None
    bad = next(ch for ch in rel if not ch.isprintable())
    return (
        f"file or folder name contains {printable(bad)} (a control, line-break or "
        "unprintable character); rename it"
    )


def parse_source(rel: str, data: bytes) -> SourceFile | Diagnostic:
    """Parse bytes already read (from disk or from a git tree)."""
    problem = name_problem(rel)
    if problem:
        return file_error(rel, problem)
    if len(data) > MAX_FILE_BYTES:
        return file_error(rel, f"file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _position_of_byte(data, exc.start)
        return file_error(rel, "file is not valid UTF-8", line, col)
    if "\x00" in text:
        line, col = _position_of_byte(data, data.index(b"\x00"))
        return file_error(rel, "file contains a NUL character", line, col)
    try:
        documents = load_documents(text)
    except YamlSyntaxError as exc:
        return file_error(rel, f"invalid YAML: {exc.message}", exc.line, exc.col)
    return SourceFile(path=rel, documents=tuple(documents))


def _position_of_byte(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters, as editors count) of a byte offset."""
    before = data[:offset]
    line = before.count(b"\n") + 1
    line_start = before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")
    return line, len(line_start) + 1


def _unsafe_path(root: Path, path: Path) -> str | None:
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return "symlink does not point to a regular file"
    except (OSError, RuntimeError):  # ELOOP, or Python's own "Symlink loop" check
        return "symlink loop; refusing to follow it"
    if not target.is_relative_to(root.resolve()):
        return "symlink points outside the repository; refusing to follow it"
    if not target.is_file():
        return "symlink does not point to a regular file"
    return link_text_problem(root, path)


_MAX_HOPS = 40  # as the kernel's ELOOP limit


def link_text_problem(root: Path, path: Path) -> str | None:
    """Why a symlink's text (each link of a chain) would not name the same file in
    every copy of the repository, or None.

    git stores a link's text as written, and a clone elsewhere, or the export of a
    commit that publish builds, resolves it from its own folder: an absolute path, or a
    relative one that climbs above the repository's top (even to come back in by the
    folder's name), reaches inside only here.
    """
    top = root.resolve()
    current = path
    for _ in range(_MAX_HOPS):
        if not current.is_symlink():
            return None
        text = current.readlink()
        if text.is_absolute():
            return (
                "symlink to an absolute path: git stores it as written, so in a clone "
                "elsewhere (or the commit publish builds) it points outside the "
                "repository; make it relative"
            )
        folder = current.parent.resolve()
        if not folder.is_relative_to(top):
            return None  # reached through a linked folder: the resolved checks judge it
        rel = posixpath.normpath(f"{folder.relative_to(top).as_posix()}/{text.as_posix()}")
        if rel == ".." or rel.startswith("../"):
            return (
                "symlink climbs above the repository's top folder: from another copy of "
                "the repository it points elsewhere; link within the repository"
            )
        current = top / rel
    return "symlink loop; refusing to follow it"


def repository_root(start: Path) -> Path:
    """The spec repository a command run in `start` works on, found as git finds its
    top: `start` or the nearest folder above it holding servegen.yaml, else the top of
    the git working tree. Never above that top: a servegen.yaml outside the repository
    is not its config, and outside any working tree `start` is taken as it is."""
    here = start.absolute()
    chain = [here, *here.parents]
    top = next((i for i, folder in enumerate(chain) if os.path.lexists(folder / ".git")), None)
    if top is None:
        return start
    found = next((f for f in chain[: top + 1] if os.path.lexists(f / CONFIG_FILE)), chain[top])
    return start if found == here else found


def load_config_file(root: Path) -> SourceFile | Diagnostic | None:
    path = root / CONFIG_FILE
    if not path.exists() and not path.is_symlink():
        return None
    return read_source(root, path)


def load_specs(root: Path, spec_dir: str) -> LoadResult:
    files: list[SourceFile] = []
    diagnostics: list[Diagnostic] = []
    failed: set[str] = set()
    base = root / spec_dir
    problem = link_text_problem(root, base) if base.is_symlink() else None
    if problem:
        diag = file_error(spec_dir, f"spec folder: {problem}")
        return LoadResult((), (diag,), frozenset({spec_dir}))
    if base.is_symlink() and not base.resolve().is_relative_to(root.resolve()):
        diag = file_error(spec_dir, "spec folder is a symlink outside the repository")
        return LoadResult((), (diag,), frozenset({spec_dir}))

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else base
        rel = relative(root, where) if where.is_relative_to(root) else spec_dir
        if exc.errno == errno.ENOENT and where == base:
            return  # a missing spec folder is a warning, given by validation
        diagnostics.append(file_error(rel, folder_problem(exc)))
        failed.add(rel)

    for path in discover(root, spec_dir, unreadable):
        result = read_source(root, path)
        if isinstance(result, Diagnostic):
            diagnostics.append(result)
            failed.add(result.path)
        else:
            files.append(result)
    return LoadResult(tuple(files), tuple(diagnostics), frozenset(failed))
