"""Publish the rendered output to the deploy branch: atomically, idempotently, never backwards.

One publish is one commit on `refs/heads/<deploy.branch>` holding exactly the rendered
output tree (`Build.files`) plus `hydrator.metadata` at the root (the GitOps Promoter /
Argo CD source-hydrator provenance file).  The order of work follows the safety
practices for rendered-manifest generators:

1. Render and validate *everything* first (HEAD: from the working tree when it provably
   holds HEAD's inputs, else HEAD's tree exported to a temporary folder; or the working
   tree with `--worktree`); any error raises before git is written to.
2. Compare with the deploy branch's current tip:
   * never backwards: when the tip records (`drySha`) a source commit that already
     contains the one being published, nothing is published;
   * duplicate detection: when the output equals the tip's tree *ignoring*
     `hydrator.metadata`, nothing is committed ("up to date").  Metadata alone changes
     with every source commit, and a commit per source commit that changes no manifest
     would only wake Flux for nothing;
   * prune guard: removing a model from any environment, or shrinking the rendered
     object count by more than `deploy.max_shrink`, needs `--allow-prune`.
3. Build the commit with plumbing (private index, no hooks, user's worktree and index
   untouched) and move the branch with compare-and-swap.
4. With `--push`: fast-forward only; on rejection fetch, re-check, rebuild the same
   files on the new tip and retry, a bounded number of times with jittered backoff.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from generator import git, listingcache, outtree
from generator.config import Config
from generator.errors import GitError, ServegenError
from generator.immutable import tree_changes
from generator.outindex import Digested, KnownDigests, digest
from generator.outtree import deployed_objects, index_models, models_by_environment
from generator.pipeline import Build, build
from generator.reporter import Reporter
from generator.snapshot import build_head, repository_prefix
from generator.version import servegen_version

V = TypeVar("V")  # what stands for a file's content: its bytes, or its blob id

METADATA_FILE = "hydrator.metadata"
DEFAULT_REMOTE = "origin"
SHORT = 7

Status = Literal["published", "up-to-date", "newer"]


@dataclass(frozen=True)
class PublishSettings:
    """How to publish: what `servegen publish` and `watch --publish` are asked to do."""

    worktree: bool = False  # the working tree (uncommitted changes included), not HEAD
    push: bool = False
    remote: str | None = None  # default: deploy.remote in servegen.yaml, else origin
    branch: str | None = None  # default: deploy.branch in servegen.yaml
    allow_prune: bool = False
    allow_replace: bool = False  # publish changes the cluster can only make by recreating
    sign: bool = False
    crds: tuple[Path, ...] = ()
    max_attempts: int = 10


# --------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class Source:
    """What is being published: a commit, and whether uncommitted changes are included."""

    commit: git.CommitInfo
    dirty: bool
    repo_url: str
    clean: bool = False  # built from a working tree known to hold exactly this commit

    @property
    def sha(self) -> str:
        return self.commit.sha


def build_source(
    repo: git.Repo, root: Path, commit: str | None, crds: Sequence[Path]
) -> tuple[Build, bool]:
    """Build `root` as in `commit` (HEAD), or as on disk; the flag: the working tree's
    inputs are known to be HEAD's (see snapshot.build_head)."""
    crds = tuple(p.resolve() for p in crds)
    if commit is None:
        result, clean = build(root, crds=crds), False
    else:
        result, clean = build_head(repo, root, commit, crds=crds)
    if result.failed_files:  # build() raises first; a failed file is never "removed"
        raise ServegenError(f"not publishing: {', '.join(sorted(result.failed_files))} failed")
    return result, clean


def source_url(repo: git.Repo, remote: str) -> str:
    url = git.remote_url(repo, remote)
    if url is None and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", remote):
        url = remote
    return git.public_url(url) if url else str(repo.worktree or repo.git_dir)


def metadata(source: Source) -> bytes:
    """The root `hydrator.metadata` JSON (GitOps Promoter / Argo CD hydrator shape)."""
    author = source.commit.author
    data = {
        "drySha": source.sha,
        "repoURL": source.repo_url,
        "author": f"{author.name} <{author.email}>",
        "date": author.date or "",
        "subject": source.commit.subject,
        "body": source.commit.body,
        "servegen": servegen_version(),
    }
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def recorded_source(files: Mapping[str, bytes]) -> str | None:
    """The `drySha` a deploy tree records, or None (no or unreadable metadata)."""
    raw = files.get(METADATA_FILE)
    if raw is None:
        return None
    try:
        value = json.loads(raw).get("drySha")
    except (ValueError, AttributeError, RecursionError):  # a deploy branch edited by hand
        return None
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{40,64}", value) else None


# --------------------------------------------------------------------------- deploy trees


@dataclass(frozen=True)
class EnvironmentChanges:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def model_changes(
    old: Mapping[str, bytes], new: Mapping[str, bytes]
) -> dict[str, EnvironmentChanges]:
    """Per environment: models added, changed (any of their files differ) and removed."""
    old_envs, new_envs = models_by_environment(old), models_by_environment(new)
    # Only a model on both sides can have changed: a first publish indexes none.
    both = set().union(*(old_envs[env] & new_envs[env] for env in old_envs.keys() & new_envs))
    old_idx, new_idx = (index_models(_of_models(side, both)) for side in (old, new))
    out = {}
    for env in sorted(old_envs.keys() | new_envs.keys()):
        before, after = old_envs.get(env, set()), new_envs.get(env, set())
        changed = sorted(
            m
            for m in before & after
            if old_idx[m].environment_files(env) != new_idx[m].environment_files(env)
        )
        changes = EnvironmentChanges(
            tuple(sorted(after - before)), tuple(changed), tuple(sorted(before - after))
        )
        if changes:
            out[env] = changes
    return out


def with_metadata(files: Mapping[str, bytes], data: bytes) -> Mapping[str, bytes]:
    """`files` and the metadata file. Files that know their digests (a stored build's)
    still do, so git.blob_ids() can find their blob ids without reading them."""
    if not isinstance(files, Digested):
        return {**files, METADATA_FILE: data}
    digests = {**files.digests(), METADATA_FILE: digest(data)}
    return KnownDigests(_WithMetadata(files, data), digests)


class _WithMetadata(Mapping[str, bytes]):
    """`files` and the metadata file, each file of `files` read when asked for."""

    def __init__(self, files: Mapping[str, bytes], data: bytes) -> None:
        self._files, self._data = files, data

    def __getitem__(self, path: str) -> bytes:
        return self._data if path == METADATA_FILE else self._files[path]

    def __iter__(self) -> Iterator[str]:
        yield from (path for path in self._files if path != METADATA_FILE)
        yield METADATA_FILE

    def __len__(self) -> int:
        return len(self._files) + (METADATA_FILE not in self._files)

    def __contains__(self, path: object) -> bool:
        return path == METADATA_FILE or path in self._files  # (Mapping's would read it)


# --------------------------------------------------------------------------- prune guard


def prune_problems(
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
    max_shrink: float,
    changes: Mapping[str, EnvironmentChanges] | None = None,
    touched: tuple[Mapping[str, bytes], Mapping[str, bytes]] | None = None,
) -> list[str]:
    """Why publishing `new` over `old` needs --allow-prune; empty when it does not.

    `touched`: both trees cut down to the models with any difference (`touched_models`).
    An untouched model deploys the same objects on both sides, so the objects that go
    and the drop in their number are found from the cut alone; the whole old tree is
    counted only when the number drops at all, to weigh the drop against it.
    """
    if not old:
        return []
    if METADATA_FILE not in old:
        return [
            f"the branch holds {len(old)} file(s) not written by servegen "
            "(no hydrator.metadata); publishing would replace them"
        ]
    problems = [
        f"{env}: model(s) removed: {', '.join(env_changes.removed)}"
        for env, env_changes in (changes or model_changes(old, new)).items()
        if env_changes.removed
    ]
    problems += flux_problems(old, new)
    before, after = (deployed_objects(side) for side in (touched or (old, new)))
    drop = _count(before) - _count(after)
    if drop <= 0:
        return problems
    old_count = _count(deployed_objects(old)) if touched else _count(before)
    if drop / old_count > max_shrink:
        gone = sorted(
            f"{env}/{obj}" for env, objs in before.items() for obj in objs - after.get(env, set())
        )
        problems.append(
            f"rendered objects would drop from {old_count} to {old_count - drop} "
            f"({drop / old_count:.0%}, more than deploy.max_shrink "
            f"{max_shrink:.0%}); objects that would go: {', '.join(gone)}"
        )
    return problems


def flux_problems(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> list[str]:
    """What Flux would do on the cluster that nobody asked for (kustomize-controller
    v1.9.4, kustomization_controller.go): an environment gone from the tree is never torn
    down (its Kustomizations stop at "path not found", before any prune), and Flux objects
    that change name or namespace are replaced: the old `-flux` Kustomization prunes the
    old objects, whose finalizer deletes every model they applied, before the new ones
    create them again."""
    before, after = outtree.flux_sources_of(old), outtree.flux_sources_of(new)
    problems = []
    for env, sources in sorted(before.items()):
        if env not in after and f"{outtree.cluster_dir(env)}/{outtree.KUSTOMIZATION}" in new:
            continue  # `flux:` dropped from servegen.yaml: the environment stays
        if env not in after:
            problems.append(
                f"{env}: environment removed: its Flux objects would stop at 'path not "
                "found' and remove nothing; tear it down on the cluster (README, "
                "'Removing an environment')"
            )
        elif sources != after[env]:
            problems.append(
                f"{env}: the Flux objects change name or namespace: the old ones would "
                "delete every model of the environment before the new ones create them "
                "again (README, 'Renaming the Flux objects')"
            )
    return problems


def _count(objects: Mapping[str, set[str]]) -> int:
    return sum(len(found) for found in objects.values())


# --------------------------------------------------------------------------- message


def commit_message(source: Source, changes: Mapping[str, EnvironmentChanges]) -> str:
    subject = source.commit.subject or "(no subject)"
    lines = [f"{source.sha[:SHORT]}: {subject}", ""]
    if source.dirty:
        lines += [f"Rendered from the working tree at {source.sha} (with uncommitted changes).", ""]
    lines += [*_change_lines(changes), ""]
    author = source.commit.author
    lines += [
        f"Source-Commit: {source.sha}",
        f"Source-Repository: {source.repo_url}",
        f"Co-authored-by: {author.name} <{author.email}>",
    ]
    return "\n".join(lines) + "\n"


def _change_lines(changes: Mapping[str, EnvironmentChanges]) -> list[str]:
    if not changes:
        return ["No model changed (shared files only)."]
    lines = []
    for env, change in changes.items():
        lines.append(f"{env}:")
        for label, names in (
            ("added", change.added),
            ("changed", change.changed),
            ("removed", change.removed),
        ):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
    return lines


# --------------------------------------------------------------------------- publishing


@dataclass(frozen=True)
class Target:
    repo: git.Repo
    branch: str
    remote: str | None  # None: local branch only
    source_remote: str  # where a recorded source commit we lack can be fetched from
    committer: git.Identity
    sign: bool
    allow_prune: bool
    max_shrink: float
    max_attempts: int
    reporter: Reporter  # notes for people: where they go is the caller's choice
    allow_replace: bool = False
    # Keep each new deploy commit's listing in the build cache for the next process
    # (listingcache); a watcher builds on the listing it holds in memory instead.
    keep_listing: bool = True


@dataclass(frozen=True)
class Tips:
    """Where the local and remote deploy branches were seen at the start of an attempt."""

    local: str | None
    remote: str | None
    checked_out: bool = False  # the deploy branch is the one checked out here


@dataclass(frozen=True)
class Outcome:
    status: Status
    branch: str
    commit: str | None  # the deploy tip afterwards
    source: str
    recorded: str | None = None  # for "newer": the source the branch already holds
    pushed: bool = False
    changes: Mapping[str, EnvironmentChanges] = field(default_factory=dict)
    attempts: int = 1
    clean: bool = False  # HEAD was built and the working tree holds it: nothing uncommitted


def committer_identity(repo: git.Repo, config: Config) -> git.Identity:
    configured = config.deploy.committer
    if configured is not None:
        return git.Identity(configured.name, configured.email)
    return git.identity_from_env_or_config(repo)


def _head(repo: git.Repo) -> git.CommitInfo:
    try:
        return git.head_commit(repo)
    except GitError as exc:
        raise GitError("the repository has no commit yet: commit the specs first") from exc


def _target_and_source(
    settings: PublishSettings,
    repo: git.Repo,
    head: git.CommitInfo,
    config: Config,
    reporter: Reporter,
) -> tuple[Target, Source]:
    deploy = config.deploy
    remote = settings.remote or deploy.remote or DEFAULT_REMOTE
    target = Target(
        repo=repo,
        branch=settings.branch or deploy.branch,
        remote=remote if settings.push else None,
        source_remote=remote,
        committer=committer_identity(repo, config),
        sign=settings.sign,
        allow_prune=settings.allow_prune,
        max_shrink=deploy.max_shrink,
        max_attempts=max(1, settings.max_attempts),
        reporter=reporter,
        allow_replace=settings.allow_replace,
    )
    return target, Source(head, settings.worktree, source_url(repo, remote))


def prepare(
    root: Path, settings: PublishSettings, reporter: Reporter
) -> tuple[Target, Source, Mapping[str, bytes]]:
    """Render and validate everything; nothing is written to git here. The files are
    the build's as it gives them: a stored build's stay in its entry, read when asked."""
    repo = git.open_repo(root)
    repository_prefix(repo, root)
    head = _head(repo)
    result, clean = build_source(repo, root, None if settings.worktree else head.sha, settings.crds)
    target, source = _target_and_source(settings, repo, head, result.config, reporter)
    for note in result.notes:
        reporter.note(note)
    return target, replace(source, clean=clean), result.files


def publish(root: Path, settings: PublishSettings, reporter: Reporter) -> Outcome:
    target, source, files = prepare(root, settings, reporter)
    return replace(publish_files(target, source, files), clean=source.clean)


def publish_worktree(
    root: Path,
    settings: PublishSettings,
    files: Mapping[str, bytes],
    config: Config,
    reporter: Reporter,
) -> str:
    """`publish --worktree` for the watcher, with the tree it already rendered and checked.

    The same guards apply (never backwards, no-op skip, prune guard, CAS, push retry);
    only the render is not repeated, which is what keeps watch-to-commit fast.
    """
    repo = git.open_repo(root)
    repository_prefix(repo, root)
    worktree = replace(settings, worktree=True)
    target, source = _target_and_source(worktree, repo, _head(repo), config, reporter)
    return describe(publish_files(replace(target, keep_listing=False), source, files))


def check_pushable(target: Target, source: Source) -> git.RemoteHeads | None:
    """With --push, only a source commit the remote's default branch holds is published.

    What Flux deploys must be what was reviewed and merged: an unpushed commit or a
    feature branch would put a state on the deploy branch that its source branch never
    had, and "never backwards" would then block the real next merge.

    Returns what the one `ls-remote` saw (the deploy branch's tip too), for the first
    attempt's tips; None without --push.
    """
    if target.remote is None:
        return None
    remote = target.remote
    heads = git.remote_heads(target.repo, remote, target.branch)
    branch = heads.default_branch
    if branch is None:
        raise GitError(
            f"{remote} names no default branch (its HEAD points at no branch): cannot check "
            "that the source is merged. Point the remote's HEAD at the branch you merge into "
            "(in a bare repository: git symbolic-ref HEAD refs/heads/main)"
        )
    # The usual case, the source is the branch's tip: the answer needs no fetch.
    tip = heads.default_tip
    if tip != source.sha:
        tip = git.fetch_seen(target.repo, remote, branch, tip)
    if tip is not None and not git.is_ancestor(target.repo, source.sha, tip):
        if git.is_shallow(target.repo):
            raise GitError(
                f"this is a shallow clone: cannot tell whether {remote}/{branch} contains "
                f"{source.sha[:SHORT]}. Run `git fetch --unshallow` (actions/checkout: "
                "fetch-depth: 0) and publish again"
            )
        tip = None
    if tip is None:
        raise GitError(
            f"refusing to push: source commit {source.sha[:SHORT]} is not on {remote}'s "
            f"default branch {branch}. Only merged commits are published: merge it into "
            f"{branch} (and push {branch}) first, or run publish without --push to build the "
            "deploy commit locally"
        )
    return heads


def publish_files(target: Target, source: Source, files: Mapping[str, bytes]) -> Outcome:
    """The bounded fetch / build / compare-and-swap / push loop."""
    heads = check_pushable(target, source)
    for attempt in range(1, target.max_attempts + 1):
        # A retry follows a lost race: it fetches afresh whatever ls-remote saw before.
        tips = current_tips(target, heads if attempt == 1 else None)
        outcome = attempt_publish(target, source, files, tips)
        if outcome is not None:
            return replace(outcome, attempts=attempt)
        if attempt < target.max_attempts:
            backoff(attempt)
    where = f"{target.remote}/{target.branch}" if target.remote else target.branch
    raise GitError(
        f"gave up publishing to {where} after {target.max_attempts} attempt(s): it kept "
        "moving (or a stale .lock file blocks it); run publish again"
    )


def backoff(attempt: int) -> None:
    delay = min(2.0, 0.05 * 2 ** (attempt - 1))
    time.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not crypto


def current_tips(target: Target, heads: git.RemoteHeads | None = None) -> Tips:
    """The local and remote deploy tips; `heads`: what an `ls-remote` just saw, so the
    remote branch is fetched only when it is not here yet."""
    refs = git.branch_refs(target.repo, target.branch, target.remote)
    remote = None
    if target.remote is not None and heads is not None:
        seen = heads.branch_tip
        remote = git.fetch_seen(target.repo, target.remote, target.branch, seen, refs.tracking)
    elif target.remote is not None:
        remote = git.fetch_branch(target.repo, target.remote, target.branch)
    return Tips(refs.local, remote, refs.checked_out)


def start_point(target: Target, tips: Tips) -> str | None:
    """The commit to build on: without --push the local tip, with --push the remote's.

    Local deploy commits the remote lacks are never pushed along: publish without --push
    builds from any source (a feature branch, the working tree), so they may hold
    what was never merged, and the merged check and the prune guard judge against the
    remote tip only. The local branch then follows the remote (see finish())."""
    if target.remote is None:
        return tips.local
    local_only = tips.local is not None and (
        tips.remote is None or not git.is_ancestor(target.repo, tips.local, tips.remote)
    )
    if local_only:
        target.reporter.note(
            f"local {target.branch} holds deploy commits {target.remote} does not (publishes "
            f"without --push); they are not pushed: building on {target.remote}'s "
            f"{target.branch}" + ("" if tips.remote else " (none yet)")
        )
    return tips.remote


def attempt_publish(
    target: Target, source: Source, files: Mapping[str, bytes], tips: Tips
) -> Outcome | None:
    """One attempt; None means "lost a race, try again"."""
    check_deploy_branch(target, tips, source.sha)
    parent = start_point(target, tips)
    new_files = with_metadata(files, metadata(source))
    # A tip servegen made is listed from memory or the build cache, else by git; a kept
    # listing also tells blob_ids() the blob id of each file by its digest.
    tip = listingcache.read_tree(target.repo, parent) if parent else None
    oids = git.blob_ids(target.repo, new_files)
    # The tip's files; only those that differ from the new ones are read from git.
    listed = git.read_unlike(target.repo, tip, new_files, oids) if tip else None
    deployed: Mapping[str, bytes] = listed if listed is not None else {}
    recorded = recorded_source(deployed)
    if recorded and recorded != source.sha and contains(target, recorded, source.commit):
        outcome = Outcome("newer", target.branch, parent, source.sha, recorded)
        return finish(target, tips, outcome)
    # Files compare by their blob ids: no file's bytes are read to tell they are the same.
    deployed_oids = listed.oids if listed is not None else {}
    differ = differing_paths(deployed_oids, oids)
    # A new source that renders the same files needs no commit, unless the tip does not
    # say which source it holds (its metadata removed or broken by hand): status and
    # promote read it there.
    if parent and recorded and not [path for path in differ if path != METADATA_FILE]:
        return finish(target, tips, Outcome("up-to-date", target.branch, parent, source.sha))
    # The touched models' files, each named by its blob id: which models are added,
    # changed or removed, and which objects go, need no file's bytes.
    named = touched_models(deployed_oids, oids, differ)
    old_ids, new_ids = ({path: oid.encode() for path, oid in side.items()} for side in named)
    changes = model_changes(old_ids, new_ids)  # once: the guard and the message use it
    check_prune(target, deployed, new_files, changes, (old_ids, new_ids))
    del named, old_ids, new_ids  # a first publish at 10,000 specs names every file here
    if deployed:  # only a deployed object can need replacing: a first publish reads none
        check_replacements(target, *touched_models(deployed, new_files, differ))
    message = commit_message(source, changes)
    committer = target.committer
    commit = git.build_commit(
        target.repo, new_files, parent, message, committer, committer, target.sign, tip, oids
    )
    made = Outcome("published", target.branch, commit, source.sha, changes=changes)
    published = finish(target, tips, made)
    if published is not None and target.keep_listing:  # the next process builds on it
        listingcache.store(target.repo, commit)
    return published


def check_prune(
    target: Target,
    old: Mapping[str, bytes],
    new: Mapping[str, bytes],
    changes: Mapping[str, EnvironmentChanges],
    touched: tuple[Mapping[str, bytes], Mapping[str, bytes]] | None = None,
) -> None:
    problems = prune_problems(old, new, target.max_shrink, changes, touched)
    if problems and not target.allow_prune:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ServegenError(
            f"refusing to publish to {target.branch}: it would prune\n{listing}\n"
            "(a spec that fails to load is never removed: the build fails first). "
            "Pass --allow-prune if this is intended."
        )


def check_replacements(target: Target, old: Mapping[str, bytes], new: Mapping[str, bytes]) -> None:
    """Refuse changes the cluster cannot make in place, unless --allow-replace."""
    found = tree_changes(old, new)
    if not found:
        return
    listing = "\n".join(f"  - {change.describe()}" for change in found)
    if not target.allow_replace:
        raise ServegenError(
            f"refusing to publish to {target.branch}: the cluster would refuse these "
            f"updates\n{listing}\nPass --allow-replace to publish anyway."
        )
    target.reporter.note(f"publishing changes that need a replacement:\n{listing}")


def differing_paths(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """The paths of either tree whose file the other lacks or holds otherwise, by what
    names each file's content (git blob ids)."""
    differ = [path for path, named in new.items() if old.get(path) != named]
    return differ + [path for path in old if path not in new]


def touched_models(
    old: Mapping[str, V], new: Mapping[str, V], differ: Sequence[str]
) -> tuple[dict[str, V], dict[str, V]]:
    """Both trees cut down to the models with any file added, changed or removed (a
    path in `differ`, from differing_paths()).

    A model's files (and the objects read from them) live in its own folder, so an
    untouched model is the same on both sides: it is neither added, changed nor
    removed, and has no update for the cluster to refuse. Leaving it out of
    `model_changes` and `tree_changes` changes no result and spares comparing and
    parsing thousands of unchanged files; only the files kept are read.
    """
    touched = {model for path in differ if (model := outtree.model_of(path)) is not None}
    return _of_models(old, touched), _of_models(new, touched)


def _of_models(files: Mapping[str, V], models: set[str]) -> dict[str, V]:
    """The files of `files` in the folders of `models`.

    A model's files all lie in models/<name>/: for a few models that prefix picks the
    candidates (one C call per path), and model_of() decides for those few. For many
    (a first publish: every model), each path is asked: a startswith() of 10,000
    prefixes for each of 62,000 paths took seconds."""
    if not models:
        return {}
    folders = tuple(outtree.model_folder(name) for name in sorted(models))
    prefixes = folders if len(folders) <= _FEW_MODELS else ("",)
    return {
        path: files[path]
        for path in files
        if path.startswith(prefixes) and outtree.model_of(path) in models
    }


_FEW_MODELS = 64  # touched models whose folders pick a cut's candidates by prefix


def contains(target: Target, recorded: str, source: git.CommitInfo | str) -> bool:
    """True when `recorded` (from the deploy branch) already includes the source commit."""
    if isinstance(source, git.CommitInfo):
        if recorded in source.parents:
            # The usual publish after a merge: the tip records the source's parent, which
            # cannot include its own child. No question to git.
            return False
        source = source.sha
    source_sha = source
    try:  # a commit we have: one question to git
        if git.is_ancestor(target.repo, source_sha, recorded):
            return True
    except GitError:
        if not _fetch_recorded(target, recorded, source_sha):
            return False
        if git.is_ancestor(target.repo, source_sha, recorded):
            return True
    if git.is_shallow(target.repo) and not git.is_ancestor(target.repo, recorded, source_sha):
        # A shallow clone may lack the history linking the two: "not an ancestor" would
        # then be a guess, and a wrong guess publishes an older state over a newer one.
        raise GitError(
            f"this is a shallow clone: cannot tell whether {target.branch}'s source commit "
            f"{recorded[:SHORT]} contains {source_sha[:SHORT]}. Run `git fetch --unshallow` "
            "(actions/checkout: fetch-depth: 0) and publish again"
        )
    return False


def _fetch_recorded(target: Target, recorded: str, source_sha: str) -> bool:
    """Make sure the recorded source commit is here (fetched when the remote has it);
    False when it exists nowhere, so the source history was rewritten (a force-push).

    Only with --push is that sure: check_pushable() then fetched the remote default
    branch's tip, which holds every merge a newer source could be, so a complete clone
    that still lacks the recorded commit shows it is on no merged history."""
    if commit_exists(target.repo, recorded) or (
        git.fetch_commit(target.repo, target.source_remote, recorded)
        and commit_exists(target.repo, recorded)
    ):
        return True
    if target.remote is None or git.is_shallow(target.repo):
        raise GitError(
            f"{target.branch} was published from source commit {recorded}, which is not in "
            "this repository: cannot tell whether it is newer than "
            f"{source_sha[:SHORT]}. Fetch the full history (e.g. actions/checkout "
            "fetch-depth: 0) and publish again"
        )
    target.reporter.note(
        f"{target.branch} was published from source commit {recorded[:SHORT]}, which "
        f"neither this repository nor {target.source_remote} has any more (its history "
        f"was rewritten); publishing {source_sha[:SHORT]} over it"
    )
    return False


def check_deploy_branch(target: Target, tips: Tips, source_sha: str) -> None:
    """The deploy branch must be servegen's own: never a source branch, never sharing history.

    Publishing to `main` would fast-forward it to a tree of manifests: specs and config
    gone. A deploy branch always starts as an orphan, so any common ancestor with the
    source means it is (or was built on) a source branch.
    """
    if tips.checked_out:
        raise GitError(
            f"refusing to publish to {target.branch}: it is the branch checked out here "
            "(the source). Set deploy.branch in servegen.yaml to a branch of its own"
        )
    for tip in dict.fromkeys((tips.local, tips.remote)):  # once when both are the same
        if tip is not None and git.merge_base(target.repo, tip, source_sha) is not None:
            raise GitError(
                f"refusing to publish to {target.branch}: it shares history with the source "
                f"commit {source_sha[:SHORT]}, so it is a source branch, not a deploy branch. "
                "Set deploy.branch in servegen.yaml to a branch of its own"
            )


def commit_exists(repo: git.Repo, sha: str) -> bool:
    try:
        git.resolve_commit(repo, sha)
    except GitError:
        return False
    return True


def finish(target: Target, tips: Tips, outcome: Outcome) -> Outcome | None:
    """Push (when asked), then move the local branch; None when a race was lost.

    With --push the remote is the source of truth: the local branch follows it only
    after a successful push, so a lost race leaves no local commit to reconcile.
    """
    tip = outcome.commit
    if tip is None:
        return outcome
    pushed = False
    moving = tip != tips.local
    if target.remote is not None and tip != tips.remote:
        # When the local branch moves too, its update-ref sets the tracking ref as well.
        result = git.push_branch(
            target.repo, target.remote, tip, target.branch, tips.remote, track=not moving
        )
        if result.retryable:
            return None
        if not result.ok:
            detail = f": {result.detail}" if result.detail else ""
            raise GitError(f"{target.remote} refused {target.branch} {result.summary}{detail}")
        pushed = True
    if moving and not move_local(target, tip, tips.local, pushed):
        return None  # another local publisher moved the branch: start again
    return replace(outcome, pushed=pushed)


def move_local(target: Target, tip: str, expected: str | None, pushed: bool) -> bool:
    """CAS the local branch to `tip`.  After a push it only mirrors the remote: best effort."""
    pushed_to = target.remote if pushed else None
    try:
        if git.update_branch(target.repo, target.branch, tip, expected, pushed_to):
            return True
        problem = "it moved meanwhile"
    except GitError as exc:
        if not pushed:
            raise
        problem = exc.message
    if not pushed:
        return False
    target.reporter.note(f"local {target.branch} not updated ({problem})")
    return True


def describe(outcome: Outcome) -> str:
    """The one-line result for people."""
    short = outcome.source[:SHORT]
    pushed = " and pushed" if outcome.pushed else ""
    if outcome.attempts > 1:
        pushed += f" (attempt {outcome.attempts})"
    tip = (outcome.commit or "")[:SHORT]
    if outcome.status == "newer":
        return (
            f"{outcome.branch} already holds source {(outcome.recorded or '')[:SHORT]}, "
            f"which contains {short}: nothing to publish{pushed}"
        )
    if outcome.status == "up-to-date":
        return f"{outcome.branch} is up to date with {short} ({tip}){pushed}"
    counts = (
        ", ".join(
            f"{env}: +{len(c.added)} ~{len(c.changed)} -{len(c.removed)}"
            for env, c in outcome.changes.items()
        )
        or "no model changed"
    )
    return f"published {short} to {outcome.branch} as {tip}{pushed} ({counts})"
