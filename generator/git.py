"""The one module through which servegen uses git.

Every git process is started in one place (`_git`), hardened because the spec
repository is untrusted input:

* Repository hooks never run: every invocation carries `-c core.hooksPath=/dev/null`
  (command-line config beats every config file), and we only use plumbing, which does
  not run commit hooks in the first place.  fsmonitor, automatic gc/maintenance, replace
  refs, split indexes and commit signing are switched off the same way (signing is
  opt-in per call).
* Inherited `GIT_*` variables (GIT_DIR, GIT_INDEX_FILE, GIT_WORK_TREE,
  GIT_OBJECT_DIRECTORY, GIT_CONFIG_PARAMETERS, ...) are removed from every child
  process: its environment is built here.  The few variables that select the user's
  own config files or transport credentials are kept; identity variables are set
  explicitly by the call that needs them.
* The user's working tree, index and HEAD are never touched: commits are built with
  plumbing only (blobs via one `fast-import` that updates no ref, trees via one
  `hash-object -t tree` or `mktree --batch` that must agree with the ids computed
  here, `commit-tree`), and
  branches move only by compare-and-swap with `update-ref`, so a crash at any moment
  leaves a ref at its old or its new value.  Building on a listed tip writes only
  what differs from it.
* Repository locations are never discovered from the environment: after `open_repo`,
  every command runs with an explicit `--git-dir`.

Processes are started with `subprocess` directly: a library's repository object would
read GIT_DIR & co. from `os.environ` and run hooks in-process, and its command layer
added nothing but import time (60-80 ms of every fresh `servegen publish`).
"""

from __future__ import annotations

import enum
import hashlib
import itertools
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple, TypeVar

from generator.errors import GitError
from generator.outindex import Digested
from generator.outtree import folders_of

__all__ = [
    "BranchRefs",
    "CommitInfo",
    "Identity",
    "PlainFiles",
    "PushResult",
    "PushStatus",
    "RemoteHeads",
    "Repo",
    "Tree",
    "TreeEntry",
    "TreeFiles",
    "WorktreeStatus",
    "author_from_env_or_config",
    "blob_ids",
    "branch_refs",
    "branch_sha",
    "build_commit",
    "classify_push",
    "commit_info",
    "commit_paths",
    "commit_tree",
    "current_branch",
    "export_tree",
    "fetch_branch",
    "fetch_seen",
    "file_oids",
    "filter_overrides",
    "head_commit",
    "identity_from_env_or_config",
    "is_ancestor",
    "is_shallow",
    "known_blobs",
    "list_commit",
    "list_tree",
    "listing_from_record",
    "listing_record",
    "made_listing",
    "merge_base",
    "open_repo",
    "public_url",
    "push_branch",
    "read_tree",
    "read_tree_files",
    "read_unlike",
    "remember_blobs",
    "remote_default_branch",
    "remote_heads",
    "remote_url",
    "resolve_commit",
    "tracking_ref",
    "transport_overrides",
    "tree_of",
    "update_branch",
    "worktree_status",
    "write_tree",
]

# Passed as `-c` to every git process.  Command-line config wins over the repository's
# .git/config, so an untrusted repository cannot turn any of these back on.
_SAFE_CONFIG: tuple[str, ...] = (
    "core.hooksPath=/dev/null",  # no hook (reference-transaction, post-index-change, ...)
    "core.fsmonitor=false",  # core.fsmonitor may name a program to execute
    "commit.gpgSign=false",  # signing only when asked for (commit_tree(sign=True) passes -S)
    "gc.auto=0",  # no `gc --auto` mutating the repository behind a command
    "maintenance.auto=false",  # ... nor detached background maintenance
    "core.useReplaceRefs=false",  # read the real objects, as Flux will
    "core.splitIndex=false",  # a split private index would drop sharedindex.* in .git
    "protocol.ext.allow=never",  # `ext::` remote URLs run arbitrary commands
)

# Inherited GIT_* variables that survive: they pick the *user's* config files and
# transport credentials (needed to push from CI), never a repository location, index or
# object store.  Everything else named GIT_* is removed.
_INHERITABLE_GIT_VARS = frozenset(
    {
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSH_VARIANT",
        "GIT_ASKPASS",
        "GIT_SSL_CAINFO",
        "GIT_SSL_CAPATH",
    }
)

# Set for every command: a credential prompt would hang a CI job forever, and servegen
# only reads the user's working tree: `git status` must not take the index lock to
# refresh it (a `git checkout` the user runs meanwhile would fail on index.lock).
_BASE_ENV: Mapping[str, str] = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}

_PLAIN_MODE = "100644"  # the mode of every file servegen writes
_REGULAR_MODES = frozenset({_PLAIN_MODE, "100755", "100664"})
_SYMLINK_MODE = "120000"
_GITLINK_MODE = "160000"
_HEX_OID = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_TRACKING_NAMESPACE = "refs/servegen/remotes"


# --------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class _Result:
    status: int
    stdout: bytes
    stderr: str


def _git(
    cwd: Path,
    git_dir: Path | None,
    args: Sequence[str],
    *,
    stdin: bytes | bytearray | None = None,
    env: Mapping[str, str] | None = None,
    config: Sequence[str] = (),
) -> _Result:
    """Run `git <args>`; never raises for an exit status.

    Every git process servegen starts comes through here, so this is the one place the
    safety flags are added and the environment is cleaned.
    """
    argv = ["git"]
    if git_dir is not None:
        # Explicit --git-dir: the repository is never found via cwd or GIT_DIR.
        argv.append(f"--git-dir={git_dir}")
    for item in (*_SAFE_CONFIG, *config):
        argv += ["-c", item]
    try:
        # run() feeds the input through communicate(): a large stdin can neither
        # deadlock nor need a temporary file or a thread.
        done = subprocess.run(
            [*argv, *args],
            cwd=cwd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            env=_child_env(env),
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError(f"git executable not found: {exc}") from exc
    return _Result(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))


def _child_env(explicit: Mapping[str, str] | None) -> dict[str, str]:
    """os.environ without the inherited GIT_* variables that are dropped, plus
    `_BASE_ENV` and what the call sets."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GIT_") or name in _INHERITABLE_GIT_VARS
    }
    env.update(_BASE_ENV)
    env.update(explicit or {})
    return env


def _check(result: _Result, what: str) -> bytes:
    if result.status != 0:
        detail = result.stderr.strip() or f"exit status {result.status}"
        raise GitError(f"{what}: {detail}")
    return result.stdout


def _line(out: bytes) -> str:
    return out.decode("utf-8", "surrogateescape").strip()


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Repo:
    """An opened repository. `worktree` is None for bare repositories."""

    git_dir: Path
    worktree: Path | None
    object_format: str  # "sha1" or "sha256": the hash behind every object id
    # What was read once for this handle (config that one publish needs several times).
    memo: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)
    # Whether the clone was shallow when opened (None: not asked). A handle lives for
    # one command or one watch batch; servegen itself never makes a clone shallow.
    shallow_at_open: bool | None = field(default=None, compare=False, repr=False)

    def _run(
        self,
        *args: str,
        stdin: bytes | bytearray | None = None,
        env: Mapping[str, str] | None = None,
        config: Sequence[str] = (),
    ) -> _Result:
        return _git(self.git_dir, self.git_dir, args, stdin=stdin, env=env, config=config)


@dataclass(frozen=True)
class Identity:
    """A commit author or committer; `date` is any date git accepts (ISO 8601 works)."""

    name: str
    email: str
    date: str | None = None

    def __post_init__(self) -> None:
        for label, value in (("name", self.name), ("email", self.email)):
            if not value.strip():
                raise GitError(f"identity {label} is empty")
            if any(ch in value for ch in "<>\n\0"):
                raise GitError(f"identity {label} {value!r} contains '<', '>' or a newline")

    def env(self, role: str) -> dict[str, str]:
        """GIT_<ROLE>_NAME/EMAIL/DATE for `role` in ("AUTHOR", "COMMITTER")."""
        env = {f"GIT_{role}_NAME": self.name, f"GIT_{role}_EMAIL": self.email}
        if self.date:
            env[f"GIT_{role}_DATE"] = self.date
        return env


@dataclass(frozen=True)
class CommitInfo:
    """One commit, parsed from the raw object (no config-driven formatting involved)."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Identity  # `date` is strict ISO 8601, e.g. 2024-05-01T12:00:00+02:00
    committer: Identity
    subject: str
    body: str
    message: str
    trailers: tuple[tuple[str, str], ...]


class TreeEntry(NamedTuple):
    """One `ls-tree -r` entry; `path` is relative to the listed prefix.

    A tuple, not a dataclass: a listing makes one per file (6,000 at 1,000 specs),
    and a tuple is made in a fraction of a frozen dataclass's time.
    """

    path: str
    mode: str
    kind: str  # "blob" or "commit" (a submodule); -r never yields "tree"
    oid: str

    @property
    def is_regular_file(self) -> bool:
        return self.kind == "blob" and self.mode in _REGULAR_MODES

    @property
    def is_executable(self) -> bool:
        return self.mode == "100755"

    def describe(self) -> str:
        what = {_SYMLINK_MODE: "symlink", _GITLINK_MODE: "submodule"}.get(self.mode, "entry")
        return f"{what} {self.path!r} (mode {self.mode})"


_V = TypeVar("_V")  # what a listing's path gives: its entry, or its file's bytes


class _ByPath(Mapping[str, _V]):
    """Something of each file of a listing, whose paths and blob ids are `oids`: what
    each path gives is made or read when asked for."""

    __slots__ = ("oids",)

    def __init__(self, oids: Mapping[str, str]) -> None:
        self.oids = oids  # path -> blob id, for every file

    def __iter__(self) -> Iterator[str]:
        return iter(self.oids)

    def __len__(self) -> int:
        return len(self.oids)

    def __contains__(self, path: object) -> bool:
        return path in self.oids

    def keys(self) -> KeysView[str]:
        return self.oids.keys()  # compared with another listing's keys: at C speed


class PlainFiles(_ByPath[TreeEntry]):
    """path -> TreeEntry of a tree of plain files (mode 100644), kept as path -> blob id.

    A tree `build_commit` wrote, its kept listing, or a tree git lists with no other
    kind of entry, has thousands of files but only plain ones: their entries are made
    when asked for, and whoever only needs the ids reads `oids` (making 6,000 entries
    was most of reading a kept listing back).
    """

    __slots__ = ()

    def __getitem__(self, path: str) -> TreeEntry:
        return TreeEntry(path, _PLAIN_MODE, "blob", self.oids[path])


def file_oids(tree: Tree) -> Mapping[str, str]:
    """path -> blob id of every file (any non-tree entry) of a listing."""
    return _file_oids(tree.files)


def _file_oids(files: Mapping[str, TreeEntry]) -> Mapping[str, str]:
    """path -> blob id of every entry of a listing."""
    if isinstance(files, PlainFiles):
        return files.oids
    return {path: entry.oid for path, entry in files.items()}


@dataclass(frozen=True)
class Tree:
    """A commit's tree as listed, contents unread (`read_tree`)."""

    commit: str
    files: Mapping[str, TreeEntry]  # every non-tree entry, by full path
    folders: Mapping[str, str]  # every folder below the root -> its tree id
    # Only for a tree `build_commit` wrote (checked paths, plain files only): folder ('' is
    # the root) -> name -> blob id of a file, or None for a sub-folder.
    layout: Mapping[str, Mapping[str, str | None]] | None = None
    parents: tuple[str, ...] = ()  # likewise only for a commit build_commit made


class PushStatus(enum.Enum):
    OK = "ok"  # the remote branch now points at our commit
    UP_TO_DATE = "up-to-date"  # it already did
    REJECTED = "rejected"  # not a fast-forward of the remote branch: fetch and rebuild
    RACE = "race"  # lost a ref-lock race on the remote, or unknown outcome: retry
    DECLINED = "declined"  # refused by the remote (hook, branch protection): don't retry


@dataclass(frozen=True)
class PushResult:
    status: PushStatus
    summary: str  # git's one-line summary, e.g. "[rejected] (fetch first)"
    detail: str = ""  # git's stderr, for the user

    @property
    def ok(self) -> bool:
        return self.status in (PushStatus.OK, PushStatus.UP_TO_DATE)

    @property
    def retryable(self) -> bool:
        return self.status in (PushStatus.REJECTED, PushStatus.RACE)


# --------------------------------------------------------------------------- validation


def _check_rev(rev: str) -> str:
    # A leading dash would be parsed as an option; NUL/newline would split batch input.
    if not rev or rev.startswith("-") or any(ch in rev for ch in "\0\n\r"):
        raise GitError(f"invalid revision {rev!r}")
    return rev


_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def _check_ref_name(name: str, what: str) -> str:
    """git check-ref-format rules, done in Python (no process, no config)."""
    parts = name.split("/")
    bad = (
        not name
        or name.startswith("-")
        or name == "@"
        or ".." in name
        or "@{" in name
        or name.endswith(".")
        or _BAD_REF_CHARS.search(name) is not None
        or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)
    )
    if bad:
        raise GitError(f"invalid {what} name {name!r}")
    return name


def _branch_ref(branch: str) -> str:
    if branch.startswith("refs/"):
        raise GitError(f"give a branch name, not a ref: {branch!r}")
    if branch == "HEAD":  # git's strbuf_check_branch_ref: refs/heads/HEAD is ambiguous
        raise GitError("invalid branch name 'HEAD'")
    return "refs/heads/" + _check_ref_name(branch, "branch")


def _check_remote(remote: str) -> str:
    if not remote or remote.startswith("-") or any(ch in remote for ch in "\0\n\r"):
        raise GitError(f"invalid remote {remote!r}")
    return remote


def _check_oid(oid: str) -> str:
    if not _HEX_OID.fullmatch(oid):
        raise GitError(f"not a full object id: {oid!r}")
    return oid


# An empty, ".", ".." or ".git" (any case) component, a NUL or a backslash.
_UNSAFE_PATH = re.compile(r"(?:^|/)(?:\.{1,2}|\.git)?(?:/|$)|[\0\\]", re.IGNORECASE | re.ASCII)


def _path_parts(path: str) -> list[str]:
    """Split a repository path, rejecting anything that could escape or alias.

    git itself *silently ignores* some of these in `update-index --index-info` (and
    `mktree` accepts `..`), so the check has to happen here.
    """
    if not _plainly_safe(path) and _UNSAFE_PATH.search(path):
        raise GitError(f"unsafe path {path!r}: must be relative, without '.', '..', '.git'")
    return path.split("/")


def _plainly_safe(path: str) -> bool:
    """True for a path `_UNSAFE_PATH` cannot match, told by a few substring tests.

    The pattern matches only an empty, `.`, `..` or `.git` component, a NUL or a
    backslash. Without an empty component and with no component starting with "." none
    of those can be there; the rest is left to the pattern. (The pattern alone, tried
    at every position, took a tenth of a publish for 6,000 paths.)
    """
    return not (
        not path
        or path[0] in "./"
        or path[-1] == "/"
        or "//" in path
        or "/." in path
        or "\0" in path
        or "\\" in path
    )


def _check_no_file_dir_conflicts(paths: Sequence[str]) -> None:
    # A tree cannot hold both "a" and "a/b".
    dirs = folders_of(paths)
    clashes = sorted(p for p in paths if p in dirs)
    if clashes:
        raise GitError(f"paths used both as a file and a directory: {', '.join(clashes)}")


def _encode_path(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _decode_path(raw: bytes) -> str:
    # surrogateescape round-trips non-UTF-8 names back through _encode_path.
    return raw.decode("utf-8", "surrogateescape")


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    if prefix:
        _path_parts(prefix)
    return prefix


# --------------------------------------------------------------------------- repository


def open_repo(path: str | os.PathLike[str]) -> Repo:
    """Open the repository containing `path` (any directory inside its worktree)."""
    start = Path(path).resolve()
    if not start.is_dir():
        raise GitError(f"{path}: not a directory")
    query = (
        "rev-parse",
        "--absolute-git-dir",
        "--is-bare-repository",
        "--show-object-format",
        "--is-shallow-repository",
    )
    # The usual case, a worktree, in one process; --show-toplevel fails without one.
    found = _git(start, None, (*query, "--show-toplevel"))
    lines = _line(found.stdout).splitlines() if found.status == 0 else []
    if len(lines) == 5 and lines[1] != "true" and lines[4]:
        shallow = lines[3] == "true"
        return Repo(Path(lines[0]), Path(lines[4]), lines[2], shallow_at_open=shallow)
    found = _git(start, None, query)
    if found.status != 0:
        raise GitError(f"{path} is not inside a git repository ({found.stderr.strip()})")
    git_dir_line, _, object_format, shallow_line = _line(found.stdout).splitlines()
    # Bare, or `path` is inside the .git directory itself: treated as bare.
    shallow = shallow_line == "true"
    return Repo(Path(git_dir_line), None, object_format, shallow_at_open=shallow)


def resolve_commit(repo: Repo, rev: str) -> str:
    """The commit sha `rev` names; GitError when it names none."""
    res = repo._run(
        "rev-parse", "--verify", "--quiet", "--end-of-options", _check_rev(rev) + "^{commit}"
    )
    if res.status != 0:
        raise GitError(f"unknown revision {rev!r}")
    return _line(res.stdout)


def tree_of(repo: Repo, commit: str) -> str:
    """The tree sha of `commit`."""
    return _line(
        _check(
            repo._run("rev-parse", "--verify", "--end-of-options", _check_rev(commit) + "^{tree}"),
            f"cannot read the tree of {commit!r}",
        )
    )


def branch_sha(repo: Repo, branch: str) -> str | None:
    """Where local branch `branch` points, or None if it does not exist."""
    return _ref_sha(repo, _branch_ref(branch))


@dataclass(frozen=True)
class BranchRefs:
    """A local branch and servegen's tracking ref of it on a remote, read at once."""

    local: str | None  # the branch's commit, None when it does not exist
    tracking: str | None  # None also when no remote was named
    checked_out: bool  # HEAD (of the worktree opened) is on the branch


def branch_refs(repo: Repo, branch: str, remote: str | None = None) -> BranchRefs:
    """`branch_sha`, `_ref_sha` of `tracking_ref(remote, branch)` and whether
    `current_branch` is `branch`, in one `for-each-ref` instead of three processes."""
    local = _branch_ref(branch)
    refs = [local] if remote is None else [local, tracking_ref(_check_remote(remote), branch)]
    res = repo._run("for-each-ref", "--format=%(HEAD) %(objectname) %(refname)", *refs)
    out = _check(res, f"cannot read {local}")
    # git lists a ref whose file names no object as absent, with only this warning: a
    # publish would then take the branch for new, and its compare-and-swap fail forever.
    broken = [ref for ref in refs if f"ignoring broken ref {ref}\n" in res.stderr + "\n"]
    if broken:
        raise GitError(
            f"{broken[0]} is broken: it names no commit, and git will not change it; "
            f"remove the file {repo.git_dir / broken[0]} (or write the right commit in it)"
        )
    found: dict[str, str] = {}
    checked_out = False
    # Each line: "*" when HEAD is on the ref (else " "), its commit, its name (which
    # holds no space). A pattern also matches refs below it: exact names only.
    for line in _decode_path(out).split("\n"):
        head, rest = line[:1], line[2:]
        oid, _, name = rest.partition(" ")
        if name in refs and _HEX_OID.fullmatch(oid):
            found[name] = oid
            checked_out |= name == local and head == "*"
    tracking = found.get(refs[1]) if remote is not None else None
    return BranchRefs(found.get(local), tracking, checked_out)


def _ref_sha(repo: Repo, ref: str) -> str | None:
    res = repo._run("rev-parse", "--verify", "--quiet", "--end-of-options", ref)
    return _line(res.stdout) if res.status == 0 else None


def is_ancestor(repo: Repo, a: str, b: str) -> bool:
    """True when commit `a` is `b` or an ancestor of it.

    A commit id compared with itself needs no git process (callers pass ids they
    resolved or read from refs).
    """
    if a == b and _HEX_OID.fullmatch(a):
        return True
    res = repo._run("merge-base", "--is-ancestor", _check_rev(a), _check_rev(b))
    if res.status in (0, 1):  # documented: 0 yes, 1 no, anything else an error
        return res.status == 0
    raise GitError(f"cannot compare {a!r} and {b!r}: {res.stderr.strip()}")


def is_shallow(repo: Repo) -> bool:
    """True in a shallow clone, where missing history can hide that one commit has another."""
    if repo.shallow_at_open is not None:  # asked by the same process that opened it
        return repo.shallow_at_open
    out = _check(repo._run("rev-parse", "--is-shallow-repository"), "cannot inspect the clone")
    return _line(out) == "true"


def current_branch(repo: Repo) -> str | None:
    """The branch HEAD is on, or None when detached."""
    res = repo._run("symbolic-ref", "--quiet", "--short", "HEAD")
    return _line(res.stdout) if res.status == 0 else None


def merge_base(repo: Repo, a: str, b: str) -> str | None:
    """The best common ancestor of `a` and `b`, or None for unrelated histories."""
    res = repo._run("merge-base", _check_rev(a), _check_rev(b))
    if res.status == 1 and not res.stdout.strip():
        return None
    return _line(_check(res, f"cannot find a merge base of {a!r} and {b!r}"))


def remote_url(repo: Repo, remote: str) -> str | None:
    """The fetch URL of configured remote `remote` (insteadOf applied), or None."""
    res = repo._run("remote", "get-url", "--", _check_remote(remote))
    return _line(res.stdout) if res.status == 0 else None


def _config_get(repo: Repo, key: str) -> str | None:
    res = repo._run("config", "--get", key)
    value = _line(res.stdout) if res.status == 0 else ""
    return value or None


# --------------------------------------------------------------------------- commits


def head_commit(repo: Repo) -> CommitInfo:
    """The commit HEAD points at."""
    return commit_info(repo, "HEAD")


def commit_info(repo: Repo, rev: str) -> CommitInfo:
    """Parse the raw commit object, so no config (log.showSignature...) can run code.

    One `cat-file --batch` resolves `rev` and reads the object.
    """
    query = (_check_rev(rev) + "^{commit}\n").encode("utf-8", "surrogateescape")
    res = repo._run("cat-file", "--batch", stdin=query)
    header, _, rest = res.stdout.partition(b"\n")
    fields = header.decode("ascii", "replace").split(" ")
    # The answer is "<oid> commit <size>", or "<rev> missing" / "<rev> ambiguous".
    if res.status != 0 or len(fields) != 3 or fields[1] != "commit" or not fields[2].isdigit():
        raise GitError(f"unknown revision {rev!r}")
    sha, size = fields[0], int(fields[2])
    if not _HEX_OID.fullmatch(sha) or len(rest) < size:
        raise GitError(f"cannot read commit {sha}")
    return _parse_commit(sha, rest[:size])


def _parse_commit(sha: str, raw: bytes) -> CommitInfo:
    try:
        return _parse_commit_object(sha, raw)
    except (KeyError, ValueError, IndexError, OverflowError) as exc:
        # Hand-made objects can carry anything; report, don't crash.
        raise GitError(f"commit {sha} is malformed: {exc}") from exc


def _parse_commit_object(sha: str, raw: bytes) -> CommitInfo:
    head, _, body = raw.partition(b"\n\n")
    headers: dict[str, list[str]] = {}
    for line in head.split(b"\n"):
        if line.startswith(b" "):  # continuation of a multi-line header (gpgsig)
            continue
        key, _, value = line.decode("utf-8", "replace").partition(" ")
        headers.setdefault(key, []).append(value)
    encoding = headers.get("encoding", ["utf-8"])[0]
    try:
        message = body.decode(encoding, "replace")
    except LookupError:
        message = body.decode("utf-8", "replace")
    subject, rest = _split_message(message)
    return CommitInfo(
        sha=sha,
        tree=headers["tree"][0],
        parents=tuple(headers.get("parent", [])),
        author=_parse_ident(headers["author"][0]),
        committer=_parse_ident(headers["committer"][0]),
        subject=subject,
        body=rest,
        message=message,
        trailers=_parse_trailers(rest),
    )


def _parse_ident(value: str) -> Identity:
    """`Name <email> 1700000000 +0100` -> Identity with an ISO 8601 date."""
    name, _, rest = value.partition(" <")
    email, _, stamp = rest.rpartition("> ")
    seconds, _, offset = stamp.partition(" ")
    sign = -1 if offset.startswith("-") else 1
    digits = offset.lstrip("+-").rjust(4, "0")
    tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))
    when = datetime.fromtimestamp(int(seconds), tz).isoformat()
    return Identity(name=_clean_ident(name), email=_clean_ident(email), date=when)


def _clean_ident(value: str) -> str:
    # Identity refuses these characters; a hand-made commit may still contain them.
    return "".join(ch for ch in value if ch not in "<>\n\0").strip() or "?"


def _split_message(message: str) -> tuple[str, str]:
    """Subject (first paragraph, joined like git's %s) and body (the rest)."""
    paragraphs = message.strip("\n").split("\n\n", 1)
    subject = " ".join(line.strip() for line in paragraphs[0].splitlines())
    body = paragraphs[1].strip("\n") if len(paragraphs) > 1 else ""
    return subject, body


_TRAILER = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)")


def _parse_trailers(body: str) -> tuple[tuple[str, str], ...]:
    """`Key: value` lines of the body's last paragraph, if it consists only of them.

    Stricter than git (which tolerates some non-trailer lines) but never misreads prose.
    """
    if not body:
        return ()
    trailers: list[tuple[str, str]] = []
    for line in body.rstrip().split("\n\n")[-1].splitlines():
        match = _TRAILER.fullmatch(line)
        if match:
            trailers.append((match.group(1), match.group(2).strip()))
        elif line[:1] in (" ", "\t") and trailers:  # folded continuation line
            key, value = trailers[-1]
            trailers[-1] = (key, f"{value} {line.strip()}")
        else:
            return ()
    return tuple(trailers)


def identity_from_env_or_config(repo: Repo) -> Identity:
    """The committer: SERVEGEN_COMMITTER_*, then GIT_COMMITTER_*, then user.name/email.

    Each field is resolved on its own, like git does, and git config is read only for
    a field the environment leaves unset.  The servegen-specific variables come first
    so a CI job can give servegen an identity different from other git use.
    """
    name = _first(
        os.environ.get("SERVEGEN_COMMITTER_NAME"), os.environ.get("GIT_COMMITTER_NAME")
    ) or _config_get(repo, "user.name")
    email = _first(
        os.environ.get("SERVEGEN_COMMITTER_EMAIL"), os.environ.get("GIT_COMMITTER_EMAIL")
    ) or _config_get(repo, "user.email")
    if name is None or email is None:
        raise GitError(
            "no committer identity: set deploy.committer in servegen.yaml, or "
            "SERVEGEN_COMMITTER_NAME/SERVEGEN_COMMITTER_EMAIL, or GIT_COMMITTER_NAME/"
            "GIT_COMMITTER_EMAIL, or git config user.name/user.email"
        )
    return Identity(name=name, email=email)


def _first(*values: str | None) -> str | None:
    return next((v.strip() for v in values if v and v.strip()), None)


# --------------------------------------------------------------------------- reading trees


def list_tree(repo: Repo, rev: str, prefix: str = "") -> list[TreeEntry]:
    """Every non-tree entry under `prefix` of commit `rev`, recursively, in git order.

    A missing `prefix` gives an empty list (e.g. a deploy branch not yet holding the
    cluster directory); a missing `rev`, or a prefix naming a file, is a GitError.
    """
    prefix = _normalize_prefix(prefix)
    tree = _subtree(repo, resolve_commit(repo, rev), prefix)
    if tree is None:
        return []
    return _ls_tree(repo, tree, f"cannot list {rev!r}")


def list_commit(repo: Repo, commit: str) -> list[TreeEntry]:
    """Every non-tree entry of commit `commit` (an id), recursively: one `ls-tree`."""
    return _ls_tree(repo, _check_oid(commit), f"cannot list {commit!r}")


def _ls_tree(repo: Repo, tree: str, what: str, *options: str) -> list[TreeEntry]:
    return [TreeEntry(*record) for record in _ls_tree_records(repo, tree, what, *options)]


def _ls_tree_records(
    repo: Repo, tree: str, what: str, *options: str
) -> Iterator[tuple[str, str, str, str]]:
    """(path, mode, kind, oid) of each `ls-tree -r` entry, in git order."""
    out = _check(repo._run("ls-tree", "-r", *options, "-z", "--full-tree", tree), what)
    # Decoded once, as _decode_path does per path: the rest of a record is ASCII.
    for record in _decode_path(out).split("\0"):
        if record:
            meta, _, path = record.partition("\t")
            mode, kind, oid = meta.split(" ")
            yield path, mode, kind, oid


def _subtree(repo: Repo, commit: str, prefix: str) -> str | None:
    if not prefix:
        return tree_of(repo, commit)
    res = repo._run("rev-parse", "--verify", "--quiet", f"{commit}:{prefix}")
    if res.status != 0:
        return None
    oid = _line(res.stdout)
    kind = _line(_check(repo._run("cat-file", "-t", oid), f"cannot read {prefix!r}"))
    if kind != "tree":
        raise GitError(f"{prefix!r} in {commit} is a {kind}, not a directory")
    return oid


def read_tree_files(
    repo: Repo, rev: str, prefix: str = "", *, skip_special: bool = False
) -> dict[str, bytes]:
    """Every regular file under `prefix` of commit `rev` -> its bytes.

    Two git processes in total (`ls-tree -r -z` and one `cat-file --batch`), whatever
    the number of files.  Symlinks and submodules are a GitError naming them, or are
    left out with `skip_special=True` (an untrusted repository gets no say in what a
    symlink would point at).
    """
    entries = _regular_entries(list_tree(repo, rev, prefix), rev, skip_special)
    blobs = _read_blobs(repo, [e.oid for e in entries])
    return {e.path: blobs[e.oid] for e in entries}


def read_tree(repo: Repo, commit: str) -> Tree:
    """List `commit`'s whole tree (one `ls-tree`); read contents with `read_unlike`.

    A commit `build_commit` just made is listed from memory: it is the tree we wrote.
    """
    remembered = _LISTED.get((repo.git_dir, commit))
    if remembered is not None:
        return remembered
    oids: dict[str, str] = {}  # every file's blob id, in git's order
    special: dict[str, TreeEntry] = {}  # the files that are not plain (mode 100644)
    folders: dict[str, str] = {}
    listed = _ls_tree_records(repo, _check_oid(commit), f"cannot list {commit!r}", "-t")
    for path, mode, kind, oid in listed:
        if kind == "tree":
            folders[path] = oid
        else:
            oids[path] = oid
            if mode != _PLAIN_MODE or kind != "blob":
                special[path] = TreeEntry(path, mode, kind, oid)
    if not special:  # every tree servegen wrote: no entry made per file (62,000 at 10,000 specs)
        return Tree(commit, PlainFiles(oids), folders)
    plain = (TreeEntry(path, _PLAIN_MODE, "blob", oid) for path, oid in oids.items())
    return Tree(commit, {entry.path: special.get(entry.path, entry) for entry in plain}, folders)


# The listing of the last commit build_commit made: the next publish builds on it.
_LISTED: dict[tuple[Path, str], Tree] = {}


def made_listing(repo: Repo, commit: str) -> Tree | None:
    """The listing of `commit` when `build_commit` just made it in this process."""
    return _LISTED.get((repo.git_dir, commit))


def listing_record(tree: Tree) -> list[bytes] | None:
    """A listing `build_commit` made, as the pieces of the bytes to keep (compact JSON);
    None for any other listing.

    Read back with `listing_from_record`. What a commit id names never changes, so the
    record is good for that commit in any repository holding it. Its folders and its
    layout are encoded a few hundred folders at a time: encoded whole, the encoder's
    small strings and two copies of the text (10 MB at 10,000 specs) were the peak of
    a publish.
    """
    if tree.layout is None:
        return None
    pieces = [f'{{"commit":{_COMPACT.encode(tree.commit)},"folders":'.encode()]
    pieces += _object_pieces(tree.folders.items())
    pieces.append(b',"layout":')
    pieces += _object_pieces((folder, dict(names)) for folder, names in tree.layout.items())
    pieces.append(b"}")
    return pieces


def _object_pieces(items: Iterable[tuple[str, object]]) -> Iterator[bytes]:
    """The compact JSON object of `items` (string keys), _RECORD_FOLDERS of them a
    piece, each made when its turn comes."""
    yield b"{"
    left, separator = iter(items), ""
    while batch := dict(itertools.islice(left, _RECORD_FOLDERS)):
        yield (separator + _COMPACT.encode(batch)[1:-1]).encode()
        separator = ","
    yield b"}"


_COMPACT = json.JSONEncoder(separators=(",", ":"))
_RECORD_FOLDERS = 256  # folders encoded at once by listing_record()


def listing_from_record(repo: Repo, commit: str, record: bytes) -> Tree | None:
    """The listing of `commit` kept by `listing_record`, or None when `record` is not
    one for `commit` or is malformed in any way (then list the commit with git)."""
    try:
        data = json.loads(record)
        if data["commit"] != commit:
            return None
        return _checked_listing(repo, commit, data["folders"], data["layout"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _checked_listing(repo: Repo, commit: str, folders: object, layout: object) -> Tree | None:
    """A Tree from a record's parts, if they describe a tree `build_commit` could write:
    plain names (no empty, '.', '..' or '.git' name, no '/', NUL or backslash), ids of
    this repository's hash, every sub-folder listed. Names are judged once each (most
    repeat: kustomization.yaml, base, overlays), ids as one string: no pattern runs
    over the 11,000 entries of a 1,000-spec tree one character at a time."""
    if not isinstance(folders, dict) or not isinstance(layout, dict) or "" not in layout:
        return None
    if layout.keys() - {""} != folders.keys():
        return None
    if not all(isinstance(entries, dict) and entries for entries in layout.values()):
        return None
    if not _plain_names(set().union(*layout.values())):
        return None
    oids = [oid for entries in layout.values() for oid in entries.values() if oid is not None]
    oids += folders.values()
    size = 64 if repo.object_format == "sha256" else 40
    if {len(oid) for oid in oids} != {size} or "".join(oids).encode().translate(None, _HEX):
        return None
    files: dict[str, str] = {}
    for folder, entries in layout.items():  # layout_entries(), inlined: a call per entry
        top = f"{folder}/" if folder else ""
        for name, oid in entries.items():
            if oid is not None:
                files[top + name] = oid
            elif top + name not in layout:
                return None  # a sub-folder the layout does not list
    return Tree(commit, PlainFiles(files), folders, layout)


def layout_entries(
    layout: Mapping[str, Mapping[str, str | None]],
) -> Iterator[tuple[str, str | None]]:
    """(path, blob id, or None for a sub-folder) of each entry of a layout, folder by
    folder in the layout's order: the order of the files of a listing read back from
    its record (`_checked_listing` walks it the same way), which the digests kept
    beside the record follow (listingcache)."""
    for folder, entries in layout.items():
        top = f"{folder}/" if folder else ""
        for name, oid in entries.items():
            yield top + name, oid


_HEX = b"0123456789abcdef"


def _plain_names(names: set[str]) -> bool:
    """`_plain_name` for every name, told for most by a few tests of them all joined:
    '/' separates them (no name may hold one), and only a name starting with '.' can
    be '.', '..' or '.git'."""
    if not names:
        return True
    joined = "/".join(names)
    if joined.count("/") != len(names) - 1 or "\0" in joined or "\\" in joined or "" in names:
        return False
    return "/." not in f"/{joined}" or all(map(_plain_name, names))


def _plain_name(name: str) -> bool:
    """A name `build_commit` writes: not empty, '.', '..' or '.git' (any case), without
    '/', NUL or backslash."""
    return (
        name not in ("", ".", "..")
        and name.lower() != ".git"
        and not any(ch in name for ch in "/\0\\")
    )


def read_unlike(
    repo: Repo, tree: Tree, files: Mapping[str, bytes], oids: Mapping[str, str]
) -> TreeFiles:
    """Every regular file of `tree` -> its bytes, read only where it differs from `files`.

    A path whose blob id equals the id of its content in `files` (`oids`, from
    `blob_ids`) holds those very bytes, so they are taken from `files`, and only when
    asked for: the cost follows what changed, not the size of the tree.  Symlinks and
    submodules are a GitError naming them, as in `read_tree_files` (a tree
    `build_commit` wrote has none).
    """
    if isinstance(tree.files, PlainFiles):  # plain files only, as build_commit writes them
        listed = _file_oids(tree.files)
    else:
        listed = {e.path: e.oid for e in _regular_entries(list(tree.files.values()), tree.commit)}
    # The tree's (path, id) pairs `files` does not have: changed or gone.
    unlike = dict(listed.items() - oids.items())
    blobs = _read_blobs(repo, list(unlike.values()))
    return TreeFiles(listed, {path: blobs[oid] for path, oid in unlike.items()}, files)


class TreeFiles(_ByPath[bytes]):
    """A listed tree's files (`read_unlike`): each blob id known, the bytes of those that
    differ from the files it was compared with held, the others taken from those files
    when asked for (a stored build's files stay in its entry until then)."""

    __slots__ = ("_read", "_same")

    def __init__(
        self, oids: Mapping[str, str], read: Mapping[str, bytes], same: Mapping[str, bytes]
    ) -> None:
        super().__init__(oids)
        self._read, self._same = read, same

    def __getitem__(self, path: str) -> bytes:
        found = self._read.get(path)
        if found is not None:
            return found
        if path not in self.oids:
            raise KeyError(path)
        return self._same[path]


def _regular_entries(
    entries: list[TreeEntry], rev: str, skip_special: bool = False
) -> list[TreeEntry]:
    special = [e for e in entries if not e.is_regular_file]
    if special and not skip_special:
        listed = "; ".join(e.describe() for e in special[:10])
        more = f" and {len(special) - 10} more" if len(special) > 10 else ""
        raise GitError(f"{rev}: only regular files are supported, found {listed}{more}")
    return [e for e in entries if e.is_regular_file]


def _read_blobs(repo: Repo, oids: Sequence[str]) -> dict[str, bytes]:
    """Read many blobs with one `git cat-file --batch`."""
    unique = list(dict.fromkeys(oids))
    if not unique:
        return {}
    request = "".join(f"{oid}\n" for oid in unique).encode("ascii")
    out = _check(repo._run("cat-file", "--batch", stdin=request), "cannot read blobs")
    blobs: dict[str, bytes] = {}
    pos = 0
    for oid in unique:
        # Each answer is "<oid> <type> <size>\n<content>\n", or "<oid> missing\n".
        eol = out.index(b"\n", pos)
        header = out[pos:eol].decode("ascii", "replace").split(" ")
        if len(header) != 3 or header[1] != "blob":
            raise GitError(f"object {oid} is not a readable blob: {' '.join(header)}")
        start = eol + 1
        size = int(header[2])
        blobs[oid] = out[start : start + size]
        pos = start + size + 1
    return blobs


def export_tree(
    repo: Repo,
    rev: str,
    dest_dir: str | os.PathLike[str],
    prefix: str = "",
    *,
    skip_special: bool = False,
    links: bool = False,
) -> list[str]:
    """Write the regular files under `prefix` of `rev` into `dest_dir`; return their paths.

    `dest_dir` must be missing or empty.  Nothing is written outside it: paths with
    `..`, `.git` or absolute components (possible in hand-made trees) are refused,
    files are created with O_EXCL|O_NOFOLLOW, and no symlink is followed. With `links`
    (and `skip_special`), the tree's symlinks are made too, as links holding the text
    the tree records, after every file, and each submodule as a folder holding an empty
    `.git` file: whoever reads the export judges them as it judges a working tree
    (servegen's loader refuses links that lead out, and submodules).
    """
    listed = list_tree(repo, rev, prefix)
    entries = _regular_entries(listed, rev, skip_special)
    symlinks = [e for e in listed if links and e.kind == "blob" and e.mode == _SYMLINK_MODE]
    submodules = [e for e in listed if links and e.kind == "commit"]
    for entry in (*entries, *symlinks, *submodules):
        _path_parts(entry.path)  # validate every path before writing anything
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise GitError(f"{dest}: export destination must be a missing or empty directory")
    dest.mkdir(parents=True, exist_ok=True)
    blobs = _read_blobs(repo, [e.oid for e in (*entries, *symlinks)])
    checked: set[Path] = set()  # folders made and found inside dest, in this export
    for entry in entries:
        _write_new_file(dest, entry.path, blobs[entry.oid], entry.is_executable, checked)
    for entry in symlinks:
        _make_link(dest, entry.path, blobs[entry.oid], checked)
    for entry in submodules:
        _make_submodule(dest, entry.path, checked)
    return [e.path for e in entries]


def read_entries(repo: Repo, rev: str, entries: Sequence[TreeEntry]) -> dict[str, bytes]:
    """Path -> bytes of `entries` (some of `rev`'s listing, list_tree()): one `cat-file
    --batch`. A symlink or submodule among them is a GitError naming it."""
    regular = _regular_entries(list(entries), rev)
    blobs = _read_blobs(repo, [e.oid for e in regular])
    return {e.path: blobs[e.oid] for e in regular}


def export_files(dest_dir: str | os.PathLike[str], files: Mapping[str, bytes]) -> None:
    """Write `files` (path -> bytes: regular files read from a commit) into `dest_dir`
    as export_tree() writes a tree's: every path checked before anything is written,
    each file created anew (one already there is a GitError), no symlink followed."""
    for rel in files:
        _path_parts(rel)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    checked: set[Path] = set()
    for rel, data in files.items():
        _write_new_file(dest, rel, data, False, checked)


def _make_link(dest: Path, rel: str, text: bytes, checked: set[Path]) -> None:
    target = _inside(dest, rel, checked)
    try:
        target.symlink_to(os.fsdecode(text))
    except (OSError, ValueError) as exc:  # a NUL in the text, a name taken twice
        raise GitError(f"cannot export the symlink {rel!r}: {exc}") from exc


def _make_submodule(dest: Path, rel: str, checked: set[Path]) -> None:
    """A submodule as a checkout has one: its folder, holding a `.git` of another
    repository (here empty: nothing reads it)."""
    folder = _inside(dest, f"{rel}/-", checked).parent  # the folder, made inside dest
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(folder / ".git", flags, 0o644))
    except OSError as exc:
        raise GitError(f"cannot export the submodule {rel!r}: {exc}") from exc


def _write_new_file(
    dest: Path, rel: str, data: bytes, executable: bool, checked: set[Path]
) -> None:
    target = _inside(dest, rel, checked)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o755 if executable else 0o644)
    except FileExistsError as exc:
        raise GitError(f"{rel!r} exists twice in the tree (case-insensitive file system?)") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _inside(dest: Path, rel: str, checked: set[Path]) -> Path:
    """`dest`/`rel`, its folder made and found inside `dest` (once per folder: links are
    made only after every file, so none is in the way of a file)."""
    target = dest.joinpath(*_path_parts(rel))
    folder = target.parent
    if folder not in checked:
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not folder.resolve().is_relative_to(dest.resolve()):
            raise GitError(f"refusing to write {rel!r} outside {dest}")
        checked.add(folder)
    return target


# --------------------------------------------------------------------------- writing


def write_tree(
    repo: Repo,
    files: Mapping[str, bytes],
    base: Tree | None = None,
    oids: Mapping[str, str] | None = None,
) -> str:
    """Store `files` (path -> content, mode 100644) as blobs and trees; return the root id.

    The user's index is never used: tree objects are computed here and written with
    one git process (`_hash_trees` or `_mktree`), which must give each the id computed.
    With `base` (the listing of the commit the new one builds on) only folders with a
    difference below them are written and only changed contents stored: the same tree
    as from nothing, at the cost of what changed.  `oids` are the files' blob ids if
    the caller has them (`blob_ids`).  Compare the result with `tree_of(repo, parent)`
    to skip a commit that would change nothing.
    """
    return _write_tree(repo, files, base, oids)[0]


def _write_tree(
    repo: Repo, files: Mapping[str, bytes], base: Tree | None, oids: Mapping[str, str] | None
) -> tuple[str, dict[str, str], Mapping[str, Mapping[str, str | None]], list[str]]:
    """The root tree id, every folder's tree id and the layout of the new tree (the new
    listing's), and the paths whose content was stored anew."""
    ids = {p: oids[p] for p in files} if oids is not None else blob_ids(repo, files)
    if base is not None and base.layout is not None and base.files.keys() == files.keys():
        # The paths of a tree we wrote, again: already checked, and only the folders of
        # changed files differ from its layout.
        listed = _file_oids(base.files)
        changed = [p for p, oid in ids.items() if listed[p] != oid]
        folders: Mapping[str, Mapping[str, str | None]] = _relayout(base.layout, changed, ids)
    else:
        paths = sorted(files)
        for path in paths:
            _path_parts(path)
        _check_no_file_dir_conflicts(paths)
        changed = [p for p in paths if base is None or not _holds(base.files.get(p), ids[p])]
        folders = _folders(ids)
    _fast_import_blobs(repo, {ids[p]: p for p in changed}, files)
    stale = _stale_folders(base, changed, folders, ids)
    trees = _tree_objects(repo, folders, stale, base)
    computed: list[tuple[str, str]] = []  # (folder, tree id), sub-folders first
    write_trees = _hash_trees if len(stale) <= HASHED_TREES else _mktree
    # Our ids must be git's ids, or the root would name trees that don't exist.
    if write_trees(repo, trees, computed) != [oid for _, oid in computed]:
        raise GitError("git wrote trees under other ids than computed; refusing to commit")
    tree_ids = dict(computed)
    if base is not None:
        tree_ids = {f: tree_ids.get(f) or base.folders[f] for f in folders}
    return tree_ids.pop(""), tree_ids, folders, changed


# One entry of a tree being written: its name (a folder's with "/" after it, which
# sorts it as git does), its mode and its object id.
_Row = tuple[bytes, bytes, str]
# A tree to store: its folder, its id, the object's bytes and its entries.
_TreeObject = tuple[str, str, bytes, list[_Row]]


# Up to this many trees (a commit on a listed tip writes the root and the folders
# above each changed file) are written from files by `hash-object`; more, by `mktree`.
# mktree looks up every entry's object first, which for a folder of 1,000 loose trees
# (models/ of a deploy branch between two gc runs) was 20-30 ms of every publish; the
# entries are ids of objects the base commit holds or fast-import just stored, and the
# temporary files of a whole tree (thousands of folders) would cost more than that.
HASHED_TREES = 64


def _hash_trees(
    repo: Repo, trees: Iterable[_TreeObject], computed: list[tuple[str, str]]
) -> list[str]:
    """Store the tree objects with one `hash-object -w -t tree`; git's ids, in order.
    Each tree's (folder, id) as computed is appended to `computed`.

    Without --literally git checks each is a well-formed tree; --no-filters: the
    objects are stored as given (no attributes, no filter driver, whatever the names).
    Their entries are in git's order by construction (`_tree_objects` sorts them), and
    their names were checked (`_path_parts`, or a kept listing's `_plain_names`).
    """
    with tempfile.TemporaryDirectory(prefix="servegen-trees-") as tmp:
        paths: list[str] = []
        for folder, oid, raw, _ in trees:
            paths.append(f"{tmp}/{len(paths)}")
            with open(paths[-1], "wb") as handle:  # noqa: PTH123 - a few plain writes
                handle.write(raw)
            computed.append((folder, oid))
        if not paths:
            return []
        listed = "".join(f"{path}\n" for path in paths).encode()
        args = ("hash-object", "-w", "-t", "tree", "--no-filters", "--stdin-paths")
        out = _check(repo._run(*args, stdin=listed), "cannot write trees")
    return _line(out).splitlines()


def _mktree(repo: Repo, trees: Iterable[_TreeObject], computed: list[tuple[str, str]]) -> list[str]:
    """Store the tree objects with one `mktree --batch`; git's ids, in order. Each
    tree's (folder, id) as computed is appended to `computed`.

    Each tree becomes request text as it comes: held at once, the objects and entry
    lists of a new deploy branch's 49,000 folders (10,000 specs) were about 20 MB more
    at its peak."""
    request = bytearray()
    for folder, oid, _, rows in trees:
        request += _mktree_entries(rows)
        request += b"\0"
        computed.append((folder, oid))
    out = _check(repo._run("mktree", "-z", "--batch", stdin=request), "cannot write trees")
    return _line(out).splitlines()


def _mktree_entries(rows: Sequence[_Row]) -> bytes:
    kinds = {_TREE_MODE: b"tree", _FILE_MODE: b"blob"}
    return b"".join(
        b"%s %s %s\t%s\0" % (mode, kinds[mode], oid.encode(), key.rstrip(b"/"))
        for key, mode, oid in rows
    )


def _relayout(
    layout: Mapping[str, Mapping[str, str | None]], changed: Sequence[str], ids: Mapping[str, str]
) -> dict[str, Mapping[str, str | None]]:
    """`layout` with the changed files' new blob ids; unchanged folders are shared."""
    folders = dict(layout)
    for path in changed:
        folder, _, name = path.rpartition("/")
        folders[folder] = {**folders[folder], name: ids[path]}
    return folders


_TREE_MODE = b"40000"
_FILE_MODE = b"100644"


def _folders(ids: Mapping[str, str]) -> dict[str, dict[str, str | None]]:
    """folder ('' is the root) -> name -> blob id of a file, or None for a sub-folder."""
    folders: dict[str, dict[str, str | None]] = {"": {}}
    for path, oid in ids.items():
        folder, _, name = path.rpartition("/")
        entries = folders.get(folder)
        if entries is None:
            entries = folders[folder] = {}
            child = folder
            while True:  # enter the new folder in its parents, up to one already known
                parent, _, leaf = child.rpartition("/")
                known = parent in folders
                folders.setdefault(parent, {})[leaf] = None
                if known:
                    break
                child = parent
        entries[name] = oid
    return folders


def _stale_folders(
    base: Tree | None, changed: Sequence[str], folders: Mapping[str, object], ids: Mapping[str, str]
) -> set[str]:
    """The folders whose tree must be written: with a base, the root and every folder
    above a changed, added or removed file or a removed folder."""
    if base is None:
        return set(folders)
    marks = [*changed, *(p for p in base.files if p not in ids)]
    marks += [f for f in base.folders if f not in folders]
    stale = {""}
    for path in marks:
        folder = path.rpartition("/")[0]
        while folder not in stale:
            stale.add(folder)
            folder = folder.rpartition("/")[0]
    return stale & folders.keys()


def _tree_objects(
    repo: Repo,
    folders: Mapping[str, Mapping[str, str | None]],
    stale: set[str],
    base: Tree | None,
) -> Iterator[_TreeObject]:
    """(folder, tree id, raw tree object, entries) of each stale folder, sub-folders
    first, each made when asked for."""
    ids: dict[str, str] = {}
    for folder in sorted(stale, key=lambda f: -(f.count("/") + 1 if f else 0)):
        rows: list[_Row] = []
        for name, oid in folders[folder].items():
            if oid is not None:
                rows.append((_encode_path(name), _FILE_MODE, oid))
                continue
            path = f"{folder}/{name}" if folder else name
            sub = ids[path] if path in ids else base.folders[path]  # type: ignore[union-attr]
            rows.append((_encode_path(name) + b"/", _TREE_MODE, sub))
        rows.sort()  # git's order: by name, a folder's name as if it ended in "/"
        raw = b"".join(
            b"%s %s\0%s" % (mode, key.rstrip(b"/"), bytes.fromhex(oid)) for key, mode, oid in rows
        )
        ids[folder] = _tree_id(repo, raw)
        yield folder, ids[folder], raw, rows


def _tree_id(repo: Repo, raw: bytes) -> str:
    digest = hashlib.new(repo.object_format, b"tree %d\0" % len(raw))
    digest.update(raw)
    return digest.hexdigest()


def _holds(entry: TreeEntry | None, oid: str) -> bool:
    """True when a base entry already is this content as a plain file."""
    return (
        entry is not None and entry.kind == "blob" and entry.mode == "100644" and entry.oid == oid
    )


def blob_ids(repo: Repo, files: Mapping[str, bytes]) -> dict[str, str]:
    """path -> the id git gives its content as a blob, computed here without a process.

    What the last call hashed is not hashed again: a file whose bytes are the very
    object hashed then (a watcher publishes the same objects for every file that did
    not change: bytes are immutable, and the memo holds them), or, for files that know
    their digests (outindex.Digested: a tree taken from a stored build), whose digest is
    the one it had then, its bytes not even read.
    """
    last = _LAST_BLOBS.get(repo.object_format, {})
    new = _hash_of(repo)
    memo: dict[str, tuple[bytes, str, bool]] = {}
    oids: dict[str, str] = {}
    digests = files.digests() if isinstance(files, Digested) else None
    # One loop with the hash inlined: a call per file was half the time of hashing
    # 6,000 files of a few kilobytes.
    for path in files:
        seen = last.get(path)
        if digests is not None:
            known = digests[path]
            if seen is None or not seen[2] or seen[0] != known:
                data = files[path]
                digest = new(b"blob %d\0" % len(data))
                digest.update(data)
                seen = (known, digest.hexdigest(), True)
        else:
            data = files[path]
            if seen is None or seen[0] is not data:
                digest = new(b"blob %d\0" % len(data))
                digest.update(data)
                seen = (data, digest.hexdigest(), False)
        memo[path] = seen
        oids[path] = seen[1]
    _LAST_BLOBS.clear()
    _LAST_BLOBS[repo.object_format] = memo
    return oids


# object format -> path -> (its bytes, or their outindex.digest(); the blob id; whether a
# digest) of the last blob_ids() call.
_LAST_BLOBS: dict[str, dict[str, tuple[bytes, str, bool]]] = {}


def known_blobs(repo: Repo, oids: Mapping[str, str]) -> dict[str, bytes]:
    """path -> the outindex.digest() of its bytes, for each of `oids` (path -> blob id)
    whose blob id the last `blob_ids` call computed from a file that knew its digest:
    what `remember_blobs` takes back in another process."""
    last = _LAST_BLOBS.get(repo.object_format, {})
    known = {}
    for path, oid in oids.items():
        seen = last.get(path)
        if seen is not None and seen[2] and seen[1] == oid:
            known[path] = seen[0]
    return known


def remember_blobs(repo: Repo, digests: Mapping[str, bytes], oids: Mapping[str, str]) -> None:
    """Let the next `blob_ids` call take each of `oids` (path -> blob id, a tree this
    repository holds) for a file at that path with the digest `digests` records (from
    `known_blobs`, kept with that tree's listing) without reading its bytes. What this
    process hashed itself is kept as it is."""
    last = _LAST_BLOBS.setdefault(repo.object_format, {})
    for path, oid in oids.items():  # (keyed by the listing's own path strings)
        known = digests.get(path)
        if known is not None and path not in last:
            last[path] = (known, oid, True)


# hashlib's own constructors: hashlib.new(name) looks the name up on every call.
_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


def _hash_of(repo: Repo) -> Callable[[bytes], hashlib._Hash]:
    """A new hash of the repository's object format, fed its first bytes."""
    made = _HASHES.get(repo.object_format)
    if made is not None:
        return made
    return lambda data: hashlib.new(repo.object_format, data)


def _fast_import_blobs(repo: Repo, blobs: Mapping[str, str], files: Mapping[str, bytes]) -> None:
    """Store the content of each path of `blobs` (blob id -> path in `files`) with `git
    fast-import`; no ref is touched.

    fast-import skips objects the repository already has, so there is no need to look
    them up first.  Measured ~15x faster for 10,000 new files than temporary files plus
    `hash-object -w --stdin-paths`.  Each file is read when its turn comes, and a stream
    of about FAST_IMPORT_BYTES is given to one fast-import at a time: a first publish
    at 10,000 specs held every file's bytes twice and the stream at once (322 MB).
    """
    oids: list[str] = []
    stream = bytearray(b"feature done\n")
    for oid, path in blobs.items():
        data = files[path]  # straight into the stream: no file's bytes held beside it
        oids.append(oid)
        stream += b"blob\nmark :%d\ndata %d\n%s\n" % (len(oids), len(data), data)
        if len(stream) >= FAST_IMPORT_BYTES:
            _fast_import(repo, oids, stream)
            oids, stream = [], bytearray(b"feature done\n")
    if oids:
        _fast_import(repo, oids, stream)


FAST_IMPORT_BYTES = 16 << 20  # new files' bytes per fast-import (each run writes a pack)


def _fast_import(repo: Repo, oids: Sequence[str], stream: bytearray) -> None:
    """Run one `git fast-import` of `stream`, which `_fast_import_blobs` made of blobs
    marked 1, 2, ... in the order of `oids`, and check each blob's id."""
    stream += b"done\n"  # a truncated stream fails instead of importing half
    with tempfile.TemporaryDirectory(prefix="servegen-marks-") as tmp:
        marks = Path(tmp) / "marks"
        _check(  # (the stream itself: a copy is every new file's bytes again)
            repo._run("fast-import", "--quiet", f"--export-marks={marks}", stdin=stream),
            "cannot write blobs",
        )
        stored = dict(line.split(" ") for line in marks.read_text("ascii").splitlines())
    # Our ids must be git's ids, or the tree would reference objects that don't exist.
    for mark, oid in enumerate(oids, start=1):
        if stored.get(f":{mark}") != oid:
            raise GitError(f"fast-import stored blob {mark} as {stored.get(f':{mark}')}, not {oid}")


def commit_tree(
    repo: Repo,
    tree: str,
    parents: Sequence[str],
    message: str,
    author: Identity,
    committer: Identity,
    sign: bool = False,
) -> str:
    """Create a commit object for `tree`; no ref moves.  `sign` uses git's signing key,
    as the user's own config sets it up (see _check_signing_config)."""
    if "\0" in message:
        raise GitError("commit message contains a NUL byte")
    if sign:
        _check_signing_config(repo)
    args: list[str] = []
    for parent in parents:
        args += ["-p", _check_oid(parent)]
    # Explicit either way: -S wins over commit.gpgSign=false, --no-gpg-sign documents it.
    args.append("-S" if sign else "--no-gpg-sign")
    text = message if message.endswith("\n") else message + "\n"
    res = repo._run(
        "commit-tree",
        *args,
        _check_oid(tree),
        stdin=text.encode("utf-8"),
        env={**author.env("AUTHOR"), **committer.env("COMMITTER")},
    )
    what = "cannot sign the commit (is a signing key configured?)" if sign else "cannot commit"
    return _line(_check(res, what))


# Config that picks the program git signs with (gpg.program, gpg.<format>.program,
# gpg.ssh.defaultKeyCommand) or the key and format it signs with.
_SIGNING_KEYS = r"^(gpg\..*|user\.signingkey)$"


def _check_signing_config(repo: Repo) -> None:
    """Refuse to sign when the repository's own config sets any signing setting: its
    program would run, or the commit would carry a key the spec authors chose."""
    res = repo._run("config", "--show-scope", "-z", "--get-regexp", _SIGNING_KEYS)
    if res.status not in (0, 1):  # 1: none of these keys is set anywhere
        raise GitError(f"cannot read git config: {res.stderr.strip()}")
    for scope, key, _ in _records(res.stdout):
        if scope not in _TRUSTED_SCOPES:
            raise GitError(
                f"the repository's git config sets {key}; servegen signs only as your own "
                "git config says: remove it from .git/config"
            )


def build_commit(
    repo: Repo,
    files: Mapping[str, bytes],
    parent: str | None,
    message: str,
    author: Identity,
    committer: Identity,
    sign: bool = False,
    base: Tree | None = None,
    oids: Mapping[str, str] | None = None,
) -> str:
    """`write_tree` + `commit_tree`: a commit holding exactly `files`; returns its sha.

    `parent=None` makes a root commit (for an orphan branch).  Always creates a commit,
    even an empty one; call `write_tree` first to skip no-op commits.  `base` and
    `oids` are passed to `write_tree` (base is normally the parent's listing).
    """
    ids = {p: oids[p] for p in files} if oids is not None else blob_ids(repo, files)
    tree, folders, layout, changed = _write_tree(repo, files, base, ids)
    if parent is not None and not _HEX_OID.fullmatch(parent):
        parent = resolve_commit(repo, parent)
    parents = [] if parent is None else [parent]  # commit-tree checks it is a commit
    sha = commit_tree(repo, tree, parents, message, author, committer, sign)
    _LISTED.clear()  # one listing is all the next publish needs
    listing = Tree(sha, _entries(base, ids, changed), folders, layout, tuple(parents))
    _LISTED[(repo.git_dir, sha)] = listing
    return sha


def _entries(base: Tree | None, ids: Mapping[str, str], changed: Sequence[str]) -> PlainFiles:
    """The new tree's files as listed: the base's listing with the changed files, when
    the base is a tree we wrote with the same paths."""
    if base is not None and base.layout is not None and base.files.keys() == ids.keys():
        oids = dict(_file_oids(base.files))
        oids.update((path, ids[path]) for path in changed)
        return PlainFiles(oids)
    return PlainFiles(dict(ids))


def update_branch(
    repo: Repo, branch: str, new_sha: str, expected_old: str | None, pushed_to: str | None = None
) -> bool:
    """Compare-and-swap `refs/heads/<branch>` from `expected_old` to `new_sha`.

    `expected_old=None` means the branch must not exist yet.  Returns False, without
    raising, when the branch was not at `expected_old` (someone else moved it).
    Refuses to move the branch checked out in the worktree, which would leave the
    user's index and files out of step with HEAD.

    `pushed_to`: `new_sha` was just pushed to `branch` of this remote (`push_branch`
    with `track=False`); its tracking ref is set to it too, in the same `update-ref`
    when the branch moves, else on its own: the tracking ref follows the push whatever
    happens to the local branch.
    """
    ref = _branch_ref(branch)
    new = _check_oid(new_sha)
    if (repo.git_dir, new) not in _LISTED:  # build_commit just made that one
        new = resolve_commit(repo, new)
    old = "0" * len(new) if expected_old is None else _check_oid(expected_old)
    tracking = None if pushed_to is None else tracking_ref(_check_remote(pushed_to), branch)
    moved = False
    try:
        _refuse_checked_out(repo, ref)
        if tracking is None:
            res = repo._run("update-ref", "--no-deref", "-m", "servegen: publish", ref, new, old)
        else:  # one transaction: both refs move, or neither does
            both = f"update {ref} {new} {old}\nupdate {tracking} {new}\n".encode()
            res = repo._run(
                "update-ref", "--no-deref", "-m", "servegen: publish", "--stdin", stdin=both
            )
        moved = res.status == 0
        if moved:
            return True
        if _is_lost_cas(res.stderr):
            return False
        raise GitError(f"cannot update {ref}: {res.stderr.strip()}")
    finally:
        if tracking is not None and not moved:
            repo._run("update-ref", "--no-deref", tracking, new)


def _refuse_checked_out(repo: Repo, ref: str) -> None:
    # Covers the main and every linked worktree.  (No -z: that needs git 2.36; a path
    # with a newline could at worst cause a false refusal, never a false pass.)
    listing = _check(repo._run("worktree", "list", "--porcelain"), "cannot list worktrees")
    if f"branch {ref}" in _line(listing).splitlines():
        raise GitError(f"refusing to move {ref}: it is checked out in a worktree")


def _is_lost_cas(stderr: str) -> bool:
    text = stderr.lower()
    return (
        "but expected" in text  # the ref is at X but we expected Y
        or "reference already exists" in text  # we expected it absent
        or "unable to resolve reference" in text  # we expected it present
        or ("unable to create" in text and "file exists" in text)  # another writer's .lock
    )


# --------------------------------------------------------------------------- remotes


def tracking_ref(remote: str, branch: str) -> str:
    """Our private remote-tracking ref; never collides with the user's refs/remotes."""
    key = remote if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", remote) else None
    if key is None or key.endswith(".lock"):
        key = "url-" + hashlib.sha256(remote.encode()).hexdigest()[:16]
    return f"{_TRACKING_NAMESPACE}/{key}/{_check_ref_name(branch, 'branch')}"


# Config keys that name programs git runs to reach a remote. The repository's own
# config (.git/config, and files it includes) is as untrusted as its content: values
# from there are replaced, for the transport commands, by the user's (global, system)
# values or git's default. remote.<name>.uploadpack/receivepack are overridden by the
# --upload-pack/--receive-pack options of every fetch and push.
_TRANSPORT_KEYS = r"core\.sshcommand|core\.gitproxy|core\.askpass|credential\..*helper"
# Filter drivers (`filter=<name>` in .gitattributes or .git/info/attributes) run the
# program their config names on the files git reads from a working tree: `status` (a
# file whose stat changed), `add`, `commit`. A driver the repository's own config defines
# or redefines is switched off for those commands: its programs emptied (git then runs
# none, convert.c apply_filter; an empty `process` also hides `clean` and `smudge`, so
# it is set only where some config sets one) and `required` off (else an empty one
# fails the command). The user's own values (git-lfs in the global config) are kept.
_FILTER_KEYS = r"filter\..*\.(clean|smudge|process|required)"
_FILTER_SETTINGS = ("clean", "smudge", "process", "required")
_PROGRAM_KEYS = rf"^({_TRANSPORT_KEYS}|{_FILTER_KEYS})$"
_TRUSTED_SCOPES = frozenset({"system", "global", "command"})
_DEFAULTS = {"core.sshcommand": "ssh", "core.askpass": ""}  # core.gitproxy: _emptied_proxy


def transport_overrides(repo: Repo) -> list[str]:
    """`-c` values that neutralise program-naming config from the repository itself,
    for fetch and push.

    Read once per opened `Repo` (a publish opens its own): a fetch, a push and their
    retries all need the same answer.
    """
    _read_program_config(repo)
    return list(repo.memo["transport"])


def transport_env(repo: Repo) -> dict[str, str]:
    """Environment for fetch and push: GIT_PROXY_COMMAND, empty (no proxy), when the
    repository's own config names a core.gitProxy. git takes the first core.gitProxy
    that matches the host, reading config files before `-c` values (connect.c,
    git_proxy_command_options), so no `-c` can replace it; the variable, read before
    any config, does."""
    _read_program_config(repo)
    return {name: "" for name in repo.memo["transport_emptied"]}


def filter_overrides(repo: Repo) -> list[str]:
    """`-c` values that switch off the filter drivers the repository's own config
    defines, for the commands that read its working tree (read with the transport's)."""
    _read_program_config(repo)
    return list(repo.memo["filters"])


def _read_program_config(repo: Repo) -> None:
    if "transport" in repo.memo:
        return
    res = repo._run("config", "--show-scope", "-z", "--get-regexp", _PROGRAM_KEYS)
    if res.status not in (0, 1):  # 1: none of these keys is set anywhere
        raise GitError(f"cannot read git config: {res.stderr.strip()}")
    values: dict[str, list[tuple[str, str]]] = {}
    drivers: dict[str, list[tuple[str, str, str]]] = {}
    for scope, key, value in _records(res.stdout):
        if key.lower().startswith("filter."):  # a driver's name keeps its case
            name, _, setting = key[len("filter.") :].rpartition(".")
            drivers.setdefault(name, []).append((scope, setting.lower(), value))
        else:
            values.setdefault(key.lower(), []).append((scope, value))
    repo.memo["filters"] = _filter_overrides(drivers)
    proxies = values.pop("core.gitproxy", [])
    repo.memo["transport"] = _transport_overrides(values)
    repo.memo["transport_emptied"] = _emptied_proxy(proxies)


def _emptied_proxy(found: Sequence[tuple[str, str]]) -> list[str]:
    """The variables to set empty for a fetch or push (see transport_env())."""
    if all(scope in _TRUSTED_SCOPES for scope, _ in found):
        return []  # the user's own core.gitProxy (or none) applies as git reads it
    if any(scope in _TRUSTED_SCOPES for scope, _ in found):
        # Which of the user's entries git would have matched depends on the host: a
        # guess could send the traffic elsewhere. The repository's entry must go.
        raise GitError(
            "the repository's git config sets core.gitProxy, which servegen cannot "
            "override while your own config sets one too; remove it from .git/config"
        )
    return ["GIT_PROXY_COMMAND"]


def _filter_overrides(drivers: Mapping[str, list[tuple[str, str, str]]]) -> list[str]:
    out: list[str] = []
    for name, found in sorted(drivers.items()):
        if all(scope in _TRUSTED_SCOPES for scope, _, _ in found):
            continue
        if "=" in name or "\n" in name:  # `-c name=value` could not say it
            raise GitError(
                f"the repository's git config defines a filter driver named {name!r}, "
                "which servegen cannot switch off; remove it from .git/config"
            )
        for setting in _FILTER_SETTINGS:
            if setting == "process" and all(s != setting for _, s, _ in found):
                continue  # any `process`, even an empty one, stands in for clean and smudge
            trusted = [v for scope, s, v in found if s == setting and scope in _TRUSTED_SCOPES]
            default = "false" if setting == "required" else ""
            out.append(f"filter.{name}.{setting}={trusted[-1] if trusted else default}")
    return out


def _transport_overrides(values: Mapping[str, list[tuple[str, str]]]) -> list[str]:
    out: list[str] = []
    for key, found in sorted(values.items()):
        if all(scope in _TRUSTED_SCOPES for scope, _ in found):
            continue
        trusted = [value for scope, value in found if scope in _TRUSTED_SCOPES]
        if key.endswith(".helper"):  # a list: an empty value resets it
            out += [f"{key}=", *(f"{key}={value}" for value in trusted)]
        else:
            out.append(f"{key}={trusted[-1] if trusted else _DEFAULTS[key]}")
    return out


def _records(raw: bytes) -> Iterator[tuple[str, str, str]]:
    """`scope NUL key LF value NUL` records of `git config --show-scope -z` (git writes
    a key's section and name in lower case, its subsection as it is spelt)."""
    fields = raw.split(b"\0")
    for scope, entry in zip(fields[0::2], fields[1::2], strict=False):
        key, _, value = _decode_path(entry).partition("\n")
        yield _decode_path(scope), key, value


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.S)


def public_url(url: str) -> str:
    """`url` without credentials: no userinfo, query or fragment.

    `https://user:p@ss@host/r?token=x` -> `https://host/r`. A password may hold an
    unescaped `@` or `/`, so everything up to the last `@` before the query goes.
    (scp-style `git@host:path` names an ssh user, not a secret, and is kept.)
    """
    match = _SCHEME.match(url)
    if match is None:
        return url
    scheme, rest = match.groups()
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    return scheme + rest.rpartition("@")[2]


def _transport(repo: Repo, command: str, *args: str) -> _Result:
    """A fetch or push: repository-named programs neutralised, git's own pack programs."""
    # From the worktree, as git itself runs: a relative remote path (`../remote.git`)
    # is resolved against the directory the user's own git commands run in.
    cwd = repo.worktree or repo.git_dir
    pack = (
        "--receive-pack=git-receive-pack" if command == "push" else "--upload-pack=git-upload-pack"
    )
    env, overrides = transport_env(repo), transport_overrides(repo)
    return _git(cwd, repo.git_dir, (command, pack, *args), env=env, config=overrides)


def _fetch(repo: Repo, remote: str, refspec: str) -> _Result:
    return _transport(
        repo,
        "fetch",
        "--no-tags",
        "--no-recurse-submodules",
        "--no-write-fetch-head",
        "--no-auto-gc",
        "--end-of-options",
        remote,
        refspec,
    )


def remote_default_branch(repo: Repo, remote: str) -> str | None:
    """The branch the remote's HEAD names (its default branch), or None."""
    res = _transport(
        repo, "ls-remote", "--symref", "--end-of-options", _check_remote(remote), "HEAD"
    )
    if res.status != 0:
        raise GitError(f"cannot reach {public_url(remote)!r}: {res.stderr.strip()}")
    for line in _line(res.stdout).splitlines():
        target, _, name = line.partition("\t")
        if name == "HEAD" and target.startswith("ref: refs/heads/"):
            return target.removeprefix("ref: refs/heads/")
    return None


@dataclass(frozen=True)
class RemoteHeads:
    """What one `git ls-remote` saw: the branch the remote's HEAD names (None when it
    names none) with its tip, and the tip of one more branch (None when absent)."""

    default_branch: str | None
    default_tip: str | None
    branch_tip: str | None


def remote_heads(repo: Repo, remote: str, branch: str) -> RemoteHeads:
    """The remote's default branch and its tip, and `branch`'s tip, in one round trip.

    What a fetch would bring is then known: `fetch_seen` skips the fetches whose tip is
    already here (a publish asks for two branches; most of the time neither moved).
    """
    wanted = _branch_ref(branch)
    res = _transport(
        repo, "ls-remote", "--symref", "--end-of-options", _check_remote(remote), "HEAD", wanted
    )
    if res.status != 0:
        raise GitError(f"cannot reach {public_url(remote)!r}: {res.stderr.strip()}")
    default = head_tip = branch_tip = None
    for line in _line(res.stdout).splitlines():
        value, _, name = line.partition("\t")
        # Patterns match ref name tails: only the exact names count.
        if name == "HEAD" and value.startswith("ref: refs/heads/"):
            default = value.removeprefix("ref: refs/heads/")
        elif name == "HEAD" and _HEX_OID.fullmatch(value):
            head_tip = value
        elif name == wanted and _HEX_OID.fullmatch(value):
            branch_tip = value
    return RemoteHeads(default, head_tip if default else None, branch_tip)


def fetch_seen(
    repo: Repo, remote: str, branch: str, seen: str | None, tracked: str | None = None
) -> str | None:
    """`fetch_branch`, for a branch `remote_heads` just saw at `seen` (None: absent).

    When the private tracking ref already holds `seen`, its objects are here (a ref
    keeps them), and a fetch would transfer nothing and move nothing: it is skipped.
    Anything else, a moved, new or vanished branch, is a real fetch. `tracked`: the
    tracking ref's commit as the caller just read it (`branch_refs`), else it is read.
    """
    if tracked is None and seen is not None:
        tracked = _ref_sha(repo, tracking_ref(_check_remote(remote), branch))
    if seen is not None and tracked == seen:
        return seen
    return fetch_branch(repo, remote, branch)


def fetch_commit(repo: Repo, remote: str, sha: str) -> bool:
    """Fetch one commit by id, where the remote allows it; True when it arrived."""
    return _fetch(repo, _check_remote(remote), _check_oid(sha)).status == 0


def fetch_branch(repo: Repo, remote: str, branch: str) -> str | None:
    """Fetch `branch` of `remote` (a name or URL) into `tracking_ref`; return its sha.

    Returns None, and drops the tracking ref, when the remote has no such branch.
    """
    source = _branch_ref(branch)
    target = tracking_ref(_check_remote(remote), branch)
    res = _fetch(repo, remote, f"+{source}:{target}")
    if res.status != 0:
        if "couldn't find remote ref" in res.stderr.lower():
            repo._run("update-ref", "--no-deref", "-d", target)
            return None
        raise GitError(f"cannot fetch {branch!r} from {remote!r}: {res.stderr.strip()}")
    return _ref_sha(repo, target)


def push_branch(
    repo: Repo,
    remote: str,
    local_sha: str,
    branch: str,
    expected_remote_sha: str | None,
    track: bool = True,
) -> PushResult:
    """Fast-forward `branch` on `remote` to `local_sha`; never forces.

    `expected_remote_sha` is what the caller built on (None: the branch is new).  It
    must be an ancestor of `local_sha`, so we never even attempt a non-fast-forward;
    whether the remote still agrees is for git to decide: a moved branch comes back as
    REJECTED (or RACE if it moved mid-push).  Auth/network failures raise GitError.
    After a push our tracking ref of the branch is set to `local_sha`; `track=False`
    leaves that to the caller's `update_branch(..., pushed_to=remote)`.
    """
    dest = _branch_ref(branch)
    local = _check_oid(local_sha)
    made = _LISTED.get((repo.git_dir, local))  # build_commit just made it: no lookups
    if made is None:
        local = resolve_commit(repo, local)
    if expected_remote_sha is not None and not _builds_on(repo, local, expected_remote_sha, made):
        raise GitError(f"refusing to push {local}: it does not build on {expected_remote_sha}")
    res = _transport(
        repo,
        "push",
        "--porcelain",
        "--no-verify",
        "--no-follow-tags",
        "--no-signed",
        "--recurse-submodules=no",
        "--end-of-options",
        _check_remote(remote),
        f"{local}:{dest}",
    )
    result = classify_push(res.status, res.stdout.decode("utf-8", "replace"), res.stderr)
    if result.ok and track:
        # Keep our private view in step, so the next publish starts from what we pushed.
        repo._run("update-ref", "--no-deref", tracking_ref(remote, branch), local)
    return result


def _builds_on(repo: Repo, commit: str, base: str, made: Tree | None) -> bool:
    """Whether `base` is `commit` or an ancestor of it; a parent we gave it needs no git."""
    return (made is not None and base in made.parents) or is_ancestor(repo, base, commit)


_LOCK_MARKERS = (
    "cannot lock ref",
    "but expected",
    "incorrect old value provided",
    "failed to update ref",
    "failed to lock",
    "unable to create",
)


def classify_push(status: int, stdout: str, stderr: str) -> PushResult:
    """Classify `git push --porcelain` output.  Raises GitError for fatal failures."""
    ref_line = next((ln for ln in stdout.splitlines() if ln[:1] in " +-*!=" and "\t" in ln), None)
    if ref_line is None:
        raise GitError(f"push failed: {stderr.strip() or f'exit status {status}'}")
    flag, _, rest = ref_line.partition("\t")
    summary = rest.partition("\t")[2].strip()
    detail = stderr.strip()
    if flag == "=":
        return PushResult(PushStatus.UP_TO_DATE, summary, detail)
    if flag != "!":
        return PushResult(PushStatus.OK, summary, detail)
    text = f"{summary}\n{stderr}".lower()
    if summary.startswith("[rejected]"):  # fetch first / non-fast-forward / stale info
        return PushResult(PushStatus.REJECTED, summary, detail)
    if summary.startswith("[remote failure]") or any(m in text for m in _LOCK_MARKERS):
        return PushResult(PushStatus.RACE, summary, detail)
    return PushResult(PushStatus.DECLINED, summary, detail)


# --------------------------------------------------------------------------- working tree


# `git status` looks inside submodules by default, and there git reads the submodule's own
# config, filter drivers included, which filter_overrides() never saw: a program named
# there would run. Both status calls below therefore pass --ignore-submodules=all; a
# submodule among the specs is refused by the loader (load.NestedRepository) anyway.
_NO_SUBMODULES = "--ignore-submodules=all"


def uncommitted_paths(repo: Repo, paths: Sequence[str]) -> list[str]:
    """Files under `paths` (relative to the worktree top) that differ from HEAD: staged,
    unstaged or untracked (ignored files excluded)."""
    if repo.worktree is None or not paths:
        return []
    specs = [f":(top,literal){_normalize_prefix(p) or '.'}" for p in paths]
    # The runner works from the git directory; status needs the worktree named.
    worktree = {"GIT_WORK_TREE": str(repo.worktree)}
    out = _check(
        repo._run(
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            _NO_SUBMODULES,
            "--",
            *specs,
            env=worktree,
            config=filter_overrides(repo),
        ),
        "cannot read the working tree status",
    )
    found: list[str] = []
    entries = iter(out.split(b"\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        found.append(_decode_path(entry[3:]))
        if entry[:1] in (b"R", b"C"):
            next(entries, None)  # a rename's or copy's source path follows
    return sorted(found)


@dataclass(frozen=True)
class WorktreeStatus:
    """What `git status` says about some paths: the commit HEAD names, and every entry
    (staged, unstaged, untracked or ignored) found under them."""

    head: str | None  # None on an unborn branch
    entries: tuple[str, ...]  # raw porcelain v2 records; empty when the paths are clean


def worktree_status(repo: Repo, paths: Sequence[str]) -> WorktreeStatus:
    """`paths` (relative to the worktree top) against HEAD, in one `git status`.

    Ignored files count as entries: a build of the working tree would read them, an
    export of HEAD would not have them. The user's index is not refreshed
    (GIT_OPTIONAL_LOCKS=0, in `_BASE_ENV`): status is read-only here.
    """
    if repo.worktree is None:
        raise GitError(f"{repo.git_dir} is a bare repository: it has no working tree")
    specs = [f":(top,literal){_normalize_prefix(p) or '.'}" for p in paths]
    env = {"GIT_WORK_TREE": str(repo.worktree)}
    args = ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"]
    args.append(_NO_SUBMODULES)
    out = _check(
        repo._run(
            *args, "--ignored=matching", "--", *specs, env=env, config=filter_overrides(repo)
        ),
        "cannot read the working tree status",
    )
    head: str | None = None
    entries = []
    for record in out.split(b"\0"):
        text = record.decode("utf-8", "surrogateescape")
        if text.startswith("# branch.oid "):
            oid = text.removeprefix("# branch.oid ")
            head = oid if _HEX_OID.fullmatch(oid) else None  # "(initial)" when unborn
        elif text and not text.startswith("# "):
            entries.append(text)
    return WorktreeStatus(head, tuple(entries))


# --------------------------------------------------------------------------- the user's branch
#
# `servegen promote --commit` is the one place servegen commits to the user's own branch:
# the user asked for it, and the commit holds only the spec files promote edited. Hooks
# stay off (`core.hooksPath=/dev/null`, `--no-verify`), as everywhere.


def _worktree_env(repo: Repo) -> dict[str, str]:
    if repo.worktree is None:
        raise GitError(f"{repo.git_dir} is a bare repository: there is nothing to commit")
    return {"GIT_WORK_TREE": str(repo.worktree)}


def _top_pathspecs(paths: Sequence[str]) -> list[str]:
    # Relative to the worktree's top whatever the cwd, and never read as globs.
    return [":(top,literal)" + "/".join(_path_parts(path)) for path in paths]


def author_from_env_or_config(repo: Repo) -> Identity:
    """The user as author: GIT_AUTHOR_NAME/EMAIL, then user.name/user.email."""
    # git config is read only when the environment does not say (one process less).
    name = _first(os.environ.get("GIT_AUTHOR_NAME")) or _config_get(repo, "user.name")
    email = _first(os.environ.get("GIT_AUTHOR_EMAIL")) or _config_get(repo, "user.email")
    if name is None or email is None:
        raise GitError(
            "no author identity: set git config user.name/user.email, or "
            "GIT_AUTHOR_NAME/GIT_AUTHOR_EMAIL"
        )
    return Identity(name=name, email=email)


# What git leaves in the (worktree's) git folder while an operation waits for the user,
# during which `git commit --only` refuses a partial commit.
_IN_PROGRESS = (
    ("MERGE_HEAD", "merge"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase or am"),
)


def operation_in_progress(repo: Repo) -> str | None:
    """The git operation the checkout is in the middle of, if any."""
    return next((what for name, what in _IN_PROGRESS if (repo.git_dir / name).exists()), None)


def commit_paths(repo: Repo, paths: Sequence[str], message: str) -> str:
    """Commit exactly `paths` as they are on disk to the checked-out branch; return the sha.

    Other staged changes stay staged and out of the commit (`git commit --only`). The
    identities are passed explicitly, since inherited GIT_* variables are cleared.
    """
    if "\0" in message:
        raise GitError("commit message contains a NUL byte")
    identities = {
        **author_from_env_or_config(repo).env("AUTHOR"),
        **identity_from_env_or_config(repo).env("COMMITTER"),
    }
    env = {**_worktree_env(repo), **identities}
    specs = _top_pathspecs(paths)
    filters = filter_overrides(repo)
    _check(
        repo._run("add", "--", *specs, env=env, config=filters), "cannot stage the promoted files"
    )
    text = message if message.endswith("\n") else message + "\n"
    res = repo._run(
        "commit",
        "--quiet",
        "--no-verify",
        "--only",
        "--file=-",
        "--",
        *specs,
        stdin=text.encode("utf-8"),
        env=env,
        config=filters,
    )
    _check(res, "cannot commit the promoted files")
    return resolve_commit(repo, "HEAD")
