"""The spec repository as it is in a commit: exported to a temporary folder, then built.

`publish` builds HEAD, `diff` builds its base (and HEAD with --committed), `promote`
validates the source commit the deploy branch records, `status` renders it. All of them
read the commit through here: its tree is exported with git (no checkout, no hooks, the
user's worktree and index untouched) into a folder that is gone afterwards. `publish`
and `status` use the working tree instead when it provably holds the commit's bytes
(`on_commit`): a checkout of the commit, as in CI, is not written out again.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from generator import git
from generator.config import CONFIG_FILE
from generator.errors import GitError, ServegenError
from generator.load import listed_spec_files
from generator.pipeline import Build, build, stored_build_from
from generator.validate import load_config

# A file changed this recently may change again within the same file system timestamp
# tick, unseen by a stat comparison (git's "racily clean" problem): such inputs are
# exported instead. Coarse kernel clocks tick every 1-10 ms; this is well above.
RACY_NS = 100_000_000

T = TypeVar("T")


def repository_prefix(repo: git.Repo, root: Path) -> str:
    """`root` relative to the repository's worktree, '' at the top."""
    if repo.worktree is None:
        raise GitError(f"{root} is inside a bare repository; publish needs a worktree")
    try:
        relative = root.resolve().relative_to(repo.worktree.resolve()).as_posix()
    except ValueError as exc:
        raise GitError(f"{root} is not inside the worktree {repo.worktree}") from exc
    return "" if relative == "." else relative


@contextmanager
def exported(repo: git.Repo, root: Path, commit: str) -> Iterator[Path]:
    """A temporary folder holding `root` as it is in `commit`, its symlinks as links
    (the loader judges them as in the working tree: a spec linked from inside the
    repository is read, one linked from outside refused) and its submodules left out;
    removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="servegen-source-") as tmp:
        dest = Path(tmp) / "src"
        prefix = repository_prefix(repo, root)
        git.export_tree(repo, commit, dest, prefix, skip_special=True, links=True)
        yield dest


@contextmanager
def built_at(
    repo: git.Repo,
    root: Path,
    commit: str,
    *,
    crds: Sequence[Path] = (),
    require_config: bool = False,
) -> Iterator[Build]:
    """Build `root` as it is in `commit`, the export kept until the block ends: the
    build's root, for reading more of the commit's spec files (pipeline.rendered_files()).

    `require_config`: refuse a commit without servegen.yaml (one that predates servegen
    would otherwise build as an empty repository with the default config).
    """
    with exported(repo, root, commit) as dest:
        if require_config and not (dest / CONFIG_FILE).is_file():
            raise ServegenError(f"it has no {CONFIG_FILE} (predates servegen?)")
        yield build(dest, crds=crds)


@contextmanager
def stored_at(
    repo: git.Repo,
    root: Path,
    commit: str,
    *,
    crds: Sequence[Path] = (),
    pick: Callable[[Mapping[str, bytes]], Iterable[str]],
) -> Iterator[Build | None]:
    """The build of `root` as it is in `commit` when the build cache holds it whole,
    found from the commit's blobs: a temporary folder, the build's root until the block
    ends, holds servegen.yaml and only the spec files `pick` chooses, given each spec
    file's digest (Build.inputs), for pipeline.rendered_files(). At 10,000 specs,
    writing the commit out and reading it back was a third of a pull request's diff.

    None when the cache does not hold that build, or the commit has a symlink or a
    submodule at, above or inside the spec folder or at servegen.yaml (an export and the
    loader judge those): then built_at() does it all.
    """
    with tempfile.TemporaryDirectory(prefix="servegen-source-") as tmp:
        yield _stored_into(Path(tmp) / "src", repo, root, commit, crds, pick)


def _stored_into(
    dest: Path,
    repo: git.Repo,
    root: Path,
    commit: str,
    crds: Sequence[Path],
    pick: Callable[[Mapping[str, bytes]], Iterable[str]],
) -> Build | None:
    try:
        entries = git.list_tree(repo, commit, repository_prefix(repo, root))
        configs = [entry for entry in entries if entry.path == CONFIG_FILE]
        if not configs:
            return None  # (built_at() says whether that is an error)
        git.export_files(dest, git.read_entries(repo, commit, configs))
        config, problems = load_config(dest)
        if problems:
            return None
        if any(_in_the_way(entry.path, config.specs) for entry in entries):
            return None  # the spec folder a file or link, or one on the way to it
        inside = [entry for entry in entries if _inside(entry.path, config.specs)]
        files = git.read_entries(repo, commit, inside)  # a GitError for a link or submodule
    except GitError:
        return None
    specs = {rel: files[rel] for rel in listed_spec_files(files, config.specs)}

    def rebuild() -> Build:  # the entry turned out damaged: the whole commit, written out
        with exported(repo, root, commit) as whole:
            return build(whole, crds=crds)

    built = stored_build_from(dest, specs, crds, rebuild)
    if built is None or built.inputs is None:
        return None
    try:
        git.export_files(dest, {rel: specs[rel] for rel in pick(built.inputs[1])})
    except GitError:
        return None
    return built


def _in_the_way(path: str, specs: str) -> bool:
    """Whether the file `path` is the spec folder `specs`, or a folder on the way to it."""
    return specs != "." and (path == specs or specs.startswith(f"{path}/"))


def _inside(path: str, specs: str) -> bool:
    return specs == "." or path.startswith(f"{specs}/")


def build_head(
    repo: git.Repo, root: Path, commit: str, *, crds: Sequence[Path] = ()
) -> tuple[Build, bool]:
    """Build `root` as it is in `commit` (HEAD): from the working tree when it provably
    holds the same bytes for every input, else exported (`on_commit`). The flag: the
    working tree was used (so no spec change is left uncommitted).

    Same bytes: git status finds nothing staged, changed, untracked or ignored under the
    spec folder and servegen.yaml, HEAD is `commit`, no symlink or nested repository
    is among them (an export leaves those out), every input file hashes to the
    commit's blob at its path with no other file there, and no input changed (size, mtime,
    ctime, inode) between before that status and after the build. ctime cannot be set
    back by anyone, so an edit while the build read the files is seen.
    """
    return on_commit(repo, root, commit, lambda where: build(where, crds=crds))


def on_commit(repo: git.Repo, root: Path, commit: str, work: Callable[[Path], T]) -> tuple[T, bool]:
    """`work` of `root` as it is in `commit`, and whether the working tree was used: it
    is when it provably holds the commit's bytes for every input (see build_head),
    else `work` runs on an export."""
    before = _clean_inputs(repo, root, commit)
    if before is not None:
        done = work(root)
        if _input_stats(root, before[0]) == before[1]:
            return done, True
    with exported(repo, root, commit) as dest:
        return work(dest), False


def _clean_inputs(
    repo: git.Repo, root: Path, commit: str
) -> tuple[str, dict[str, tuple[int, ...]]] | None:
    """(spec folder, stat of every input) when the working tree's inputs are HEAD's."""
    started = time.time_ns()
    config, problems = load_config(root)
    if problems or config.validation.crds:
        return None  # the export reports problems; configured CRDs are inputs too
    stats = _input_stats(root, config.specs)
    if stats is None or any(stat[3] >= started - RACY_NS for stat in stats.values()):
        return None
    prefix = repository_prefix(repo, root)
    inputs = [f"{prefix}/{p}" if prefix else p for p in (config.specs, CONFIG_FILE)]
    # Both git processes run while the files are read and hashed here: none of them
    # depends on another's answer, and each is a wait of 10-15 ms at 1,000 specs.
    status = _meanwhile(lambda: git.worktree_status(repo, inputs))
    listing = _meanwhile(lambda: git.list_commit(repo, commit))
    try:
        same = _same_bytes(repo, root, prefix, config.specs, stats, listing)
    finally:
        found = status()  # waited for whatever happened meanwhile
    if found.head != commit or found.entries or not same:
        return None
    return config.specs, stats


def _meanwhile(call: Callable[[], T]) -> Callable[[], T]:
    """Start `call` in a thread; the function returned waits for it and gives its
    result, or raises its error. For calls that wait on a git process: the thread
    holds the interpreter's lock only to start it and to read its output. Every
    thread is waited for before the build, which forks its workers only when it is
    the one thread left."""
    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(call())
        except BaseException as exc:  # raised again by the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> T:
        thread.join()
        if failed:
            raise failed[0]
        return done[0]

    return result


def _same_bytes(
    repo: git.Repo,
    root: Path,
    prefix: str,
    specs: str,
    stats: dict[str, tuple[int, ...]],
    listing: Callable[[], list[git.TreeEntry]],
) -> bool:
    """Every input file on disk holds exactly the bytes of the commit's blob at its
    path, and the commit has no other file there (`listing`: the commit's entries).

    Hashed here, because git status compares after eol conversion and clean filters
    (core.autocrlf, .gitattributes): a clean status does not mean the same bytes.
    """
    top = f"{prefix}/" if prefix else ""
    on_disk = {
        top + path[len(str(root)) + 1 :]: path
        for path, info in stats.items()
        if stat.S_ISREG(info[0])
    }
    try:  # read and hashed while `listing` (a git process) lists the commit
        read = {path: _read(disk, stats[disk][1]) for path, disk in on_disk.items()}
    except OSError:
        read = {}
    data = {path: raw for path, raw in read.items() if raw is not None}
    if len(data) != len(on_disk):  # unreadable, or changed since the stats
        listing()  # its thread is done with before the build
        return False
    oids = git.blob_ids(repo, data)
    folder, config = f"{top}{specs.strip('/')}/", f"{top}{CONFIG_FILE}"
    wanted = {
        entry.path: entry
        for entry in listing()
        if entry.path == config or entry.path.startswith(folder)
    }
    if on_disk.keys() != wanted.keys():
        return False
    if not all(entry.is_regular_file for entry in wanted.values()):
        return False
    return all(oids[path] == entry.oid for path, entry in wanted.items())


def _read(path: str, size: int) -> bytes | None:
    """The bytes of the file `stats` found `size` bytes long; None when it holds another
    number of bytes now (it changed: the working tree is not used, as when the stats
    after the build differ).

    One read of a descriptor: a file object per file (open()) took as long as reading
    a thousand spec files.
    """
    handle = os.open(path, os.O_RDONLY)
    try:
        data = os.read(handle, size + 1)  # one byte more shows a file that grew
    finally:
        os.close(handle)
    return data if len(data) == size else None


def _input_stats(root: Path, specs: str) -> dict[str, tuple[int, ...]] | None:
    """lstat of servegen.yaml and of everything under the spec folder; None when a
    symlink or a nested repository is there."""
    stats: dict[str, tuple[int, ...]] = {}

    def add(path: str) -> bool:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return True
        if stat.S_ISLNK(info.st_mode) or path.endswith("/.git"):
            return False
        stats[path] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        return True

    unlisted: list[OSError] = []  # a folder the build could not list, the export could
    base = f"{root}/{specs}"  # strings, not Paths: a thousand joins add up
    if not (add(f"{root}/{CONFIG_FILE}") and add(base)):
        return None
    for current, dirs, files in os.walk(base, onerror=unlisted.append, followlinks=False):
        for name in (*dirs, *files):
            if not add(f"{current}/{name}"):
                return None
    return None if unlisted else stats
