"""Diff rendered *objects* between a base revision and the working state, per environment.

What is compared is what the cluster receives (each model's final objects per
environment, plus the Flux objects), not the files of the output tree: a change to a
base file shows up once per environment it reaches, as a YAML diff of the object.

Secrets are never shown (servegen renders none; they are filtered defensively), and
server-set metadata fields that would only add noise are stripped.  A base that does
not build (e.g. one that predates servegen) is treated as empty, with a note.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from generator import git, listingcache, outindex, outtree
from generator.config import CONFIG_FILE
from generator.errors import GitError, ServegenError, inert_json, printable
from generator.fields import LAST_APPLIED
from generator.flux import flux_objects
from generator.immutable import ImmutableChange, tree_changes
from generator.pipeline import Build, build, rendered_files
from generator.publish import differing_paths, recorded_source, touched_models
from generator.render import ModelRender, Object, object_key
from generator.snapshot import built_at, stored_at
from generator.versions import ModelVersion, describe_change
from generator.yamlio import dump

Action = Literal["added", "changed", "removed"]
DiffFormat = Literal["text", "markdown", "json"]
ObjectKey = tuple[str, str, str, str]  # namespace, group, kind, name

DEFAULT_BRANCHES = ("origin/main", "origin/master", "main", "master")
HIDDEN_KINDS = frozenset({"Secret"})
NOISY_METADATA = ("creationTimestamp", "generation", "managedFields", "resourceVersion", "uid")
NOISY_ANNOTATIONS = (LAST_APPLIED,)  # never rendered: config refuses it (fields.py)
ACTION_ORDER: dict[str, int] = {"added": 0, "changed": 1, "removed": 2}


@dataclass(frozen=True)
class ObjectChange:
    environment: str
    action: Action
    model: str
    api_version: str
    kind: str
    namespace: str
    name: str
    diff: str  # unified diff of the YAML

    @property
    def title(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.action} {self.kind} {where} (model {self.model})"


@dataclass(frozen=True)
class VersionChange:
    """A model whose version (location, revision, image, adapters) moved in an environment."""

    environment: str
    model: str
    old: ModelVersion | None
    new: ModelVersion | None

    @property
    def line(self) -> str:
        return f"{self.environment}: {describe_change(self.old, self.new)} ({self.model})"


@dataclass(frozen=True)
class DiffResult:
    base: str | None  # the base commit, None when there is none
    head: str  # "working tree" or a commit sha
    environments: tuple[str, ...]
    changes: tuple[ObjectChange, ...]
    notes: tuple[str, ...] = ()
    # Changes against the deploy branch the cluster cannot make in place (issue: rename
    # or --allow-replace); see generator/immutable.py.
    replacements: tuple[str, ...] = ()
    versions: tuple[VersionChange, ...] = ()

    def counts(self, env: str) -> dict[str, int]:
        out = {"added": 0, "changed": 0, "removed": 0}
        for change in self.changes:
            if change.environment == env:
                out[change.action] += 1
        return out


@dataclass(frozen=True)
class RenderedObject:
    model: str
    obj: Object
    text: str = field(compare=False)


# --------------------------------------------------------------------------- objects


def clean(obj: Object) -> Object:
    """`obj` without metadata that only adds noise to a diff."""
    out = copy.deepcopy(obj)
    metadata = out.get("metadata", {})
    for key in NOISY_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        for key in NOISY_ANNOTATIONS:
            annotations.pop(key, None)
        if not annotations:
            metadata.pop("annotations")
    out.pop("status", None)
    if isinstance(metadata, dict) and metadata:
        out["metadata"] = _in_order(metadata)
    return out


def _in_order(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata in one order whatever order it was built in: name and namespace first,
    labels and annotations sorted. A label a spec adds then shows as that one line, not
    as `namespace:` removed above it and added again below."""
    ordered: dict[str, Any] = {k: metadata[k] for k in ("name", "namespace") if k in metadata}
    for key, value in metadata.items():
        if key in ("labels", "annotations") and isinstance(value, dict):
            value = dict(sorted(value.items()))
        ordered.setdefault(key, value)
    return ordered


def build_objects(result: Build | None) -> dict[str, dict[ObjectKey, RenderedObject]]:
    """environment -> object key -> the object as the cluster receives it (a build that
    kept every object)."""
    if result is None:
        return {}
    return objects_of(result, result.models)


def objects_of(
    result: Build, models: Sequence[ModelRender], flux: bool = True
) -> dict[str, dict[ObjectKey, RenderedObject]]:
    """build_objects() of `models` (rendered with every object), and with `flux` of
    `result`'s Flux objects, which its model summaries give."""
    out: dict[str, dict[ObjectKey, RenderedObject]] = {
        env: {} for env in result.config.environments
    }
    for model in models:
        for env, rendered in model.environments.items():
            out.setdefault(env, {}).update(keyed_objects(model.name, rendered.objects))
    for env in result.config.environments if flux else ():
        out[env].update(keyed_objects("(flux)", flux_objects(result.models, result.config, env)))
    return out


def keyed_objects(
    model: str, objects: Sequence[Object]
) -> Iterator[tuple[ObjectKey, RenderedObject]]:
    for obj in objects:
        if obj.get("kind") in HIDDEN_KINDS:
            continue
        cleaned = clean(obj)
        yield object_key(obj), RenderedObject(model, cleaned, dump(cleaned))


def environment_versions(result: Build | None) -> dict[tuple[str, str], ModelVersion]:
    """(environment, model) -> the model version it runs there."""
    return {} if result is None else _versions(result.models)


def _versions(models: Iterable[ModelRender]) -> dict[tuple[str, str], ModelVersion]:
    return {
        (env, model.name): rendered.version
        for model in models
        for env, rendered in model.environments.items()
        if rendered.version is not None
    }


def diff_versions(
    base: Mapping[tuple[str, str], ModelVersion],
    head: Mapping[tuple[str, str], ModelVersion],
    environment: str | None = None,
) -> list[VersionChange]:
    return [
        VersionChange(env, model, base.get((env, model)), head.get((env, model)))
        for env, model in sorted(base.keys() | head.keys())
        if environment in (None, env) and base.get((env, model)) != head.get((env, model))
    ]


def diff_objects(
    base: Mapping[str, Mapping[ObjectKey, RenderedObject]],
    head: Mapping[str, Mapping[ObjectKey, RenderedObject]],
    environment: str | None = None,
) -> list[ObjectChange]:
    changes = []
    for env in sorted(base.keys() | head.keys()):
        if environment is not None and env != environment:
            continue
        old, new = base.get(env, {}), head.get(env, {})
        for key in sorted(old.keys() | new.keys()):
            change = _change(env, key, old.get(key), new.get(key))
            if change is not None:
                changes.append(change)
    changes.sort(key=lambda c: (c.environment, ACTION_ORDER[c.action], c.kind, c.namespace, c.name))
    return changes


def _change(
    env: str, key: ObjectKey, old: RenderedObject | None, new: RenderedObject | None
) -> ObjectChange | None:
    if old is not None and new is not None and old.text == new.text:
        return None
    action: Action = "added" if old is None else "removed" if new is None else "changed"
    some = new or old
    assert some is not None
    label = "/".join(part for part in (env, key[2], key[0], key[3]) if part)
    diff = unified(old.text if old else "", new.text if new else "", label, action)
    return ObjectChange(
        environment=env,
        action=action,
        model=some.model,
        api_version=str(some.obj.get("apiVersion", "")),
        kind=key[2],
        namespace=key[0],
        name=key[3],
        diff=diff,
    )


def unified(old: str, new: str, label: str, action: Action) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile="/dev/null" if action == "added" else f"a/{label}",
        tofile="/dev/null" if action == "removed" else f"b/{label}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --------------------------------------------------------------------------- revisions


def default_base(repo: git.Repo, deploy_branch: str) -> tuple[str | None, str]:
    """The merge base of HEAD with the default branch, else the deployed source commit."""
    try:
        head = git.resolve_commit(repo, "HEAD")
    except GitError:  # a new repository: what it renders is all new
        return None, "the repository has no commit yet"
    for name in DEFAULT_BRANCHES:
        try:
            other = git.resolve_commit(repo, name)
        except GitError:
            continue
        found = git.merge_base(repo, head, other)
        if found is not None:
            return found, f"merge base of HEAD and {name}"
    for name in (deploy_branch, f"origin/{deploy_branch}"):
        recorded = _deployed_source(repo, name)
        if recorded is not None:
            return recorded, f"source commit deployed on {name}"
    return None, "no default branch or deploy branch found"


def _deployed_source(repo: git.Repo, rev: str) -> str | None:
    try:
        files = git.read_tree_files(repo, rev, skip_special=True)
    except GitError:
        return None
    recorded = recorded_source(files)
    if recorded is None:
        return None
    try:
        return git.resolve_commit(repo, recorded)
    except GitError:
        return None


def build_base(
    repo: git.Repo,
    root: Path,
    commit: str | None,
    stack: contextlib.ExitStack,
    crds: Sequence[Path] = (),
    head: Build | None = None,
) -> tuple[Build | None, list[str], Callable[[], Build | None]]:
    """The base build, or None (with a note) when there is no base or it does not build;
    and what gives it whole, with every spec file of the commit written out.

    When the build cache holds the base's whole build under the `head`'s build key, it
    is found from the commit's blobs, and only the spec files whose digests differ from
    the head's are written out (snapshot.stored_at()). Else the commit is written out
    whole. Either way the folder stays until `stack` closes: Build.root, for
    rendered_files()."""
    if commit is None:
        return None, ["no base revision: everything shows as added"], lambda: None
    # A base without servegen.yaml when the head has one predates servegen: not a
    # repository with default settings and no specs.
    has_config = (root / CONFIG_FILE).is_file()

    def whole() -> Build:
        return stack.enter_context(
            built_at(repo, root, commit, crds=crds, require_config=has_config)
        )

    try:
        if head is not None and head.inputs is not None:
            key, digests = head.inputs

            def differing(base: Mapping[str, bytes]) -> list[str]:
                return [rel for rel, digest in base.items() if digests.get(rel) != digest]

            found = stack.enter_context(stored_at(repo, root, commit, crds=crds, pick=differing))
            if found is not None and found.inputs is not None and found.inputs[0] == key:
                return found, [], functools.cache(whole)
        built = whole()
        return built, [], lambda: built
    except ServegenError as exc:
        first = f" ({exc.diagnostics[0]})" if exc.diagnostics else ""
        note = f"base {commit[:7]} does not build: {exc.message}{first}; treated as empty"
        return None, [note], lambda: None


def build_head(
    repo: git.Repo,
    root: Path,
    worktree: bool,
    stack: contextlib.ExitStack,
    crds: Sequence[Path] = (),
) -> tuple[Build, str]:
    """The working state: the working tree, or HEAD with --committed (exported until
    `stack` closes). Errors propagate."""
    if worktree:
        return build(root, crds=crds), "working tree"
    try:
        head = git.resolve_commit(repo, "HEAD")
    except GitError as exc:
        raise GitError("the repository has no commit yet: commit the specs first") from exc
    return stack.enter_context(built_at(repo, root, head, crds=crds)), head


def choose_base(repo: git.Repo, base: str | None, deploy_branch: str) -> tuple[str | None, str]:
    if base is not None:
        return git.resolve_commit(repo, base), f"base: {base}"
    found, why = default_base(repo, deploy_branch)
    return found, f"base: {why}"


def compare(
    root: Path,
    *,
    base: str | None = None,
    environment: str | None = None,
    worktree: bool = True,
    crds: Sequence[Path] = (),
) -> DiffResult:
    """Diff the rendered objects of `base` (default: see `default_base`) against the
    working tree (or HEAD when not `worktree`), in one environment or all."""
    repo = git.open_repo(root)
    with contextlib.ExitStack() as stack:
        head_build, head_label = build_head(repo, root, worktree, stack, crds)
        envs = tuple(head_build.config.environments)
        if environment is not None:
            head_build.config.require_environment(environment)
        base_sha, why = choose_base(repo, base, head_build.config.deploy.branch)
        base_build, notes, whole_base = build_base(repo, root, base_sha, stack, crds, head_build)
        old, new = changed_sides(base_build, head_build, crds, whole_base)
    changes = diff_objects(old.objects, new.objects, environment)
    shown = {c.environment for c in changes} | set(envs)
    environments = tuple(e for e in sorted(shown) if environment in (None, e))
    replacements = tuple(
        change.describe()
        for change in deployed_replacements(repo, head_build)
        if environment in (None, change.environment)
    )
    versions = diff_versions(old.versions, new.versions, environment)
    return DiffResult(
        base_sha,
        head_label,
        environments,
        tuple(changes),
        (why, *notes),
        replacements=replacements,
        versions=tuple(versions),
    )


# --------------------------------------------------------------------------- changed models

Objects = dict[str, dict[ObjectKey, RenderedObject]]
Versions = dict[tuple[str, str], ModelVersion]


@dataclass(frozen=True)
class Side:
    """One side of a diff: what differs from the other side, with every object."""

    objects: Objects
    versions: Versions


def changed_sides(
    base: Build | None,
    head: Build,
    crds: Sequence[Path] = (),
    whole_base: Callable[[], Build | None] | None = None,
) -> tuple[Side, Side]:
    """Both sides' objects and model versions, less what is the same on both.

    Builds made with the build cache record their build key (servegen, config, CRDs)
    and each spec file's digest (Build.inputs). Under one key a spec file with the same
    bytes on both sides yields the same models, so only the spec files added, removed
    or changed are rendered again with every object (pipeline.rendered_files()); the
    Flux objects, which span every model, are compared only when the Flux folders'
    files differ. Otherwise (no base, another key, no build cache, or a spec file that
    changed since its side was built) each side is built again whole, with every
    object, and compared whole: the base as `whole_base()` gives it (its root may hold
    only the spec files that differ, see build_base()).
    """
    whole_base = whole_base or (lambda: base)
    if base is None or base.inputs is None or head.inputs is None:
        return _whole(whole_base(), crds), _whole(head, crds)
    (old_key, old), (new_key, new) = base.inputs, head.inputs
    if old_key != new_key:
        return _whole(whole_base(), crds), _whole(head, crds)
    changed = {rel for rel in old.keys() | new.keys() if old.get(rel) != new.get(rel)}
    flux = _flux_digests(base) != _flux_digests(head)
    return (
        _part(base, old, changed, flux, crds, whole_base),
        _part(head, new, changed, flux, crds, lambda: head),
    )


def _whole(built: Build | None, crds: Sequence[Path]) -> Side:
    if built is None:
        return Side({}, {})
    full = build(built.root, crds=crds, keep_objects=True)
    return Side(build_objects(full), environment_versions(full))


def _part(
    built: Build,
    recorded: Mapping[str, bytes],
    changed: set[str],
    flux: bool,
    crds: Sequence[Path],
    whole: Callable[[], Build | None],
) -> Side:
    """The side of `built` (made from the spec files' digests `recorded`) from those of
    its spec files that `changed`, and its Flux objects if `flux`."""
    rels = changed & recorded.keys()
    states = rendered_files(built.root, rels, crds) if rels else {}
    if states is None or any(state.digest != recorded[rel] for rel, state in states.items()):
        return _whole(whole(), crds)  # (a spec file changed since the build)
    models = [output.render for state in states.values() for output in state.models]
    return Side(objects_of(built, models, flux), _versions(models))


def _flux_digests(built: Build) -> dict[str, bytes]:
    return outindex.digests_under(built.files, outtree.FLUX_PREFIX)


def deployed_replacements(repo: git.Repo, head: Build) -> list[ImmutableChange]:
    """What in `head` the cluster would refuse to update from the deploy branch's state.

    Only the models whose files differ on the two sides are read and compared (as
    publish does): an untouched model has no update to refuse.
    """
    branch = head.config.deploy.branch
    for rev in (branch, f"origin/{branch}"):
        try:
            deployed, differ = _deployed(repo, rev, head.files)
        except GitError:
            continue
        return tree_changes(*touched_models(deployed, head.files, differ))
    return []


def _deployed(
    repo: git.Repo, rev: str, files: Mapping[str, bytes]
) -> tuple[Mapping[str, bytes], list[str]]:
    """The deploy tree at `rev`, and the paths where it and `files` differ: by blob ids,
    its files read only where they differ (git.read_unlike)."""
    commit = git.resolve_commit(repo, rev)
    # Listed first: a listing kept in the build cache tells blob_ids() the blob id of
    # each file by its digest, so the head's unchanged files are not read.
    tip = listingcache.read_tree(repo, commit)
    oids = git.blob_ids(repo, files)
    try:
        listed = git.read_unlike(repo, tip, files, oids)
    except GitError:  # a symlink or submodule put there by hand: the rest is read
        deployed = git.read_tree_files(repo, commit, skip_special=True)
        return deployed, differing_paths(deployed, files)
    return listed, differing_paths(listed.oids, oids)


# --------------------------------------------------------------------------- formats


def _revision(result: DiffResult) -> str:
    head = result.head if result.head == "working tree" else result.head[:7]
    base = result.base[:7] if result.base else "(empty)"
    return f"{base} -> {head}"


def format_text(result: DiffResult) -> str:
    lines = [f"servegen diff {_revision(result)}"]
    lines += [f"note: {note}" for note in result.notes]
    lines += [f"warning: needs a replacement: {text}" for text in result.replacements]
    if result.versions:
        lines.append("model versions:")
        lines += [f"  {change.line}" for change in result.versions]
    for env in result.environments:
        c = result.counts(env)
        lines.append(f"{env}: {c['added']} added, {c['changed']} changed, {c['removed']} removed")
    out = "\n".join(lines) + "\n"
    for change in result.changes:
        out += f"\n== {change.environment}: {change.title}\n{change.diff}"
    if not result.changes:
        out += "no changes to rendered objects\n"
    return out


def format_json(result: DiffResult) -> str:
    data = {
        "base": result.base,
        "head": result.head,
        "notes": list(result.notes),
        "replacements": list(result.replacements),
        "summary": {env: result.counts(env) for env in result.environments},
        "versions": [
            {
                "environment": v.environment,
                "model": v.model,
                "old": _version_json(v.old),
                "new": _version_json(v.new),
                "summary": describe_change(v.old, v.new),
            }
            for v in result.versions
        ],
        "changes": [
            {
                "environment": c.environment,
                "action": c.action,
                "model": c.model,
                "apiVersion": c.api_version,
                "kind": c.kind,
                "namespace": c.namespace,
                "name": c.name,
                "diff": c.diff,
            }
            for c in result.changes
        ],
    }
    return inert_json(json.dumps(data, indent=2, sort_keys=True)) + "\n"


def _version_json(version: ModelVersion | None) -> dict[str, object] | None:
    if version is None:
        return None
    return {
        "model": version.model,
        "revision": version.revision,
        "image": version.image,
        "adapters": list(version.adapters),
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def markdown_head(result: DiffResult, shown: int | None = None) -> str:
    """The comment's head; at most `shown` version lines and as many replacement lines
    (None: all)."""
    lines = [f"### servegen diff: `{_revision(result)}`", ""]
    lines += [f"> {_code_span(note)}" for note in result.notes]
    if result.notes:
        lines.append("")
    if result.versions:
        versions = result.versions[:shown]
        lines += ["**Model versions**", ""]
        lines += [f"- **<code>{_html(_cell(v.line))}</code>**" for v in versions]
        if len(versions) < len(result.versions):
            lines.append(f"- ... and {len(result.versions) - len(versions)} more")
        lines.append("")  # a table right after a list item would be part of it
    replacements = result.replacements[:shown]
    lines += [f"> **Needs a replacement:** {_code_span(text)}" for text in replacements]
    if len(replacements) < len(result.replacements):
        left = len(result.replacements) - len(replacements)
        lines.append(f"> ... and {left} more object(s) needing a replacement")
    if result.replacements:
        lines.append("")
    lines += ["| environment | added | changed | removed |", "|---|---:|---:|---:|"]
    for env in result.environments:
        c = result.counts(env)
        lines.append(f"| `{_cell(env)}` | {c['added']} | {c['changed']} | {c['removed']} |")
    lines.append("")
    if not result.changes:
        lines += ["No changes to rendered objects.", ""]
    return "\n".join(lines) + "\n"


def markdown_block(change: ObjectChange) -> str:
    fence = _fence(change.diff)
    summary = f"<code>{change.environment}</code>: {_html(change.title)}"
    return (
        f"<details><summary>{summary}</summary>\n\n"
        f"{fence}diff\n{change.diff}{fence}\n\n</details>\n\n"
    )


def _code_span(text: str) -> str:
    """Text that quotes untrusted names (a spec's key, a file name) as one code span: no
    @mention, link, image or emphasis of theirs comes alive in a comment the bot posts."""
    quoted = printable(text).replace("`", "'")
    return f"`{quoted}`"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncation_notice(omitted: int, total: int, max_chars: int) -> str:
    return (
        f"> **Truncated:** {omitted} of {total} object diff(s) not shown "
        f"(comment limit {max_chars:,} characters). Run `servegen diff` locally or see the "
        "full diff written with `--output-file`.\n"
    )


def format_markdown(result: DiffResult, max_chars: int | None = None) -> str:
    """The PR comment; with `max_chars`, whole object blocks are dropped to fit, and the
    version and replacement lines too when they alone would not leave room for the
    table (never a line cut in two, unless the notes alone overflow)."""
    out = markdown_head(result)
    blocks = [markdown_block(change) for change in result.changes]
    if max_chars is None:
        return out + "".join(blocks)
    reserve = len(truncation_notice(len(blocks), len(blocks), max_chars))
    shown = max(len(result.versions), len(result.replacements))
    while shown and len(out) + reserve > max_chars // 2:
        shown //= 2
        out = markdown_head(result, shown)
    shown = 0
    for block in blocks:
        if len(out) + len(block) + reserve > max_chars:
            break
        out += block
        shown += 1
    if shown < len(blocks):
        out += truncation_notice(len(blocks) - shown, len(blocks), max_chars)
    return out[:max_chars]


def format_diff(result: DiffResult, fmt: DiffFormat, max_chars: int | None) -> str:
    """The diff as `fmt`; `max_chars` caps only the markdown (a PR comment's limit)."""
    if fmt == "json":
        return format_json(result)
    if fmt == "markdown":
        return format_markdown(result, max_chars)
    return format_text(result)
