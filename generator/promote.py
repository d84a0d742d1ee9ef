"""`servegen promote`: give one environment exactly the model version another one runs.

For each model, the effective value of every overridable `spec` field (the runtime's
`spec_overrides`: model URL or path with its revision, image, adapters), plus the
`serve` fields asked for, is copied from the source environment into the target's
override (`environments.<to>.spec`/`serve`) of the spec file. The file changes only in
those values (generator/specedit.py). Before anything is written:

* the source environment's version must be the one published for it on the deploy
  branch: the deploy tree records the source commit it was rendered from (`drySha`),
  and the model's version in that commit's specs must equal today's. Promoting
  something never published would ship an untested version;
* with --require-live, the source environment must also be live, as `servegen status`
  reads it (generator/status.py): Flux applied what is published, and every model
  that would move is ready;
* the edited files must validate, and the target must end up with exactly the source's
  version while every other environment keeps its own.
"""

from __future__ import annotations

import codecs
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator import git
from generator.config import Config
from generator.errors import Diagnostic, GitError, InvalidInputError, ServegenError, printable
from generator.load import parse_source
from generator.outtree import models_by_environment
from generator.publish import recorded_source
from generator.snapshot import exported, repository_prefix
from generator.specedit import EditError, remove_key, set_value
from generator.validate import Validated, ValidatedSpec, validate_file, validate_repository
from generator.versions import ModelVersion, describe_change, version_of
from generator.write import atomic_write


class PromoteError(ServegenError):
    """A promotion was refused; nothing was written."""


@dataclass(frozen=True)
class PromoteRequest:
    """What to promote: `names` (or `all` models enabled in both) from `source` to `target`."""

    source: str
    target: str
    names: tuple[str, ...] = ()
    all: bool = False
    serve: tuple[str, ...] = ()  # serve fields to promote besides the model version
    require_live: bool = False  # the source must be live (in sync, models ready)


@dataclass(frozen=True)
class Promotion:
    model: str
    path: str
    before: ModelVersion  # the target's version until now
    after: ModelVersion  # the source's, which the target now runs
    fields: tuple[str, ...]  # spec.url, serve.args, ...

    def line(self, target: str) -> str:
        return f"{target}: {describe_change(self.before, self.after)} ({self.model})"


@dataclass(frozen=True)
class FileEdit:
    path: str
    old: str
    new: str

    @property
    def diff(self) -> str:
        lines = difflib.unified_diff(
            self.old.splitlines(keepends=True),
            self.new.splitlines(keepends=True),
            fromfile=f"a/{self.path}",
            tofile=f"b/{self.path}",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


@dataclass(frozen=True)
class Plan:
    source: str
    target: str
    promotions: tuple[Promotion, ...]
    current: tuple[str, ...]  # models already at the source's version
    edits: tuple[FileEdit, ...]
    commit: str | None = None
    live: str = ""  # with --require-live: what the cluster showed

    def message(self) -> str:
        names = ", ".join(p.model for p in self.promotions)
        lines = [f"Promote {names} from {self.source} to {self.target}", ""]
        lines += [p.line(self.target) for p in self.promotions]
        return "\n".join(lines) + "\n"


@dataclass
class _File:
    path: str
    original: str  # as read: what apply() expects to find before writing `text`
    text: str
    fields: dict[str, list[str]] = field(default_factory=dict)  # model -> fields changed


# --- the plan -------------------------------------------------------------------------


def read_spec(root: Path, path: str) -> str:
    """A spec file's text exactly (no newline translation; a BOM is kept apart)."""
    target = root / path
    if target.is_symlink():
        raise PromoteError(f"{path} is a symlink: promote edits regular files only")
    return target.read_bytes().decode("utf-8-sig")


def _spec_bytes(root: Path, path: str, text: str) -> bytes:
    bom = codecs.BOM_UTF8 if (root / path).read_bytes().startswith(codecs.BOM_UTF8) else b""
    return bom + text.encode("utf-8")


def plan(root: Path, request: PromoteRequest) -> Plan:
    """Everything promote would do, computed and checked; nothing is written."""
    validated = validate_repository(root)
    if not validated.ok:
        raise InvalidInputError(validated.diagnostics)
    _check_environments(validated, request.source, request.target)
    specs = _selected(validated, request)
    files: dict[str, _File] = {}
    promotions, current = [], []
    for spec in specs:
        changed = _promote_spec(root, spec, request, files)
        source, target = spec.environments[request.source], spec.environments[request.target]
        if changed:
            promotions.append(
                Promotion(spec.name, spec.path, version_of(target), version_of(source), changed)
            )
        else:
            current.append(spec.name)
    # Only what would move must be published (edits so far are in memory only).
    if promotions:
        published = published_versions(root, validated, request.source)
        by_name = {spec.name: spec for spec in specs}
        for promotion in promotions:
            _check_published(by_name[promotion.model], request.source, published, validated)
    live = ""
    if promotions and request.require_live:
        names = [p.model for p in promotions]
        live = check_live(root, validated.config, request.source, names)
    edits = [FileEdit(f.path, f.original, f.text) for f in files.values()]
    edits = [edit for edit in edits if edit.old != edit.new]
    _check_result(validated, edits, request, {promotion.model for promotion in promotions})
    return Plan(
        request.source, request.target, tuple(promotions), tuple(current), tuple(edits), None, live
    )


def _check_environments(validated: Validated, source: str, target: str) -> None:
    for env in (source, target):
        validated.config.require_environment(env)
    if source == target:
        raise PromoteError(f"--from and --to are both {source!r}: nothing to promote")


def _selected(validated: Validated, request: PromoteRequest) -> list[ValidatedSpec]:
    # Names or --all, one of the two: the command checks that (a usage error).
    by_name = {spec.name: spec for spec in validated.specs}
    if request.all:
        return [
            spec
            for name, spec in sorted(by_name.items())
            if request.source in spec.environments and request.target in spec.environments
        ]
    out = []
    for name in dict.fromkeys(request.names):
        spec = by_name.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PromoteError(f"no model named {name!r}{hint}")
        for env in (request.source, request.target):
            if env not in spec.environments:
                raise _disabled(spec, env)
        out.append(spec)
    return out


def _disabled(spec: ValidatedSpec, env: str) -> PromoteError:
    """The refusal to promote into or out of an environment the model is disabled in,
    at the `enabled: false` that disables it (validate leaves a model out of an
    environment for that alone)."""
    where = ("environments", env, "enabled")
    line, col = spec.document.position(where)
    problem = Diagnostic(
        spec.path, line, col, ".".join(where), f"{spec.name} is not enabled in {env}"
    )
    return PromoteError(f"nothing promoted: {spec.name} is not enabled in {env}", [problem])


# --- what is published ----------------------------------------------------------------


def published_versions(root: Path, validated: Validated, env: str) -> dict[str, ModelVersion]:
    """Model -> the version published for `env` on the deploy branch (read through git)."""
    repo = git.open_repo(root)
    deploy = validated.config.deploy
    remote = deploy.remote or "origin"
    files = None
    for rev in (deploy.branch, f"{remote}/{deploy.branch}"):
        try:
            files = git.read_tree_files(repo, rev, skip_special=True)
        except GitError:
            continue
        break
    if files is None:
        raise PromoteError(
            f"nothing is published: there is no deploy branch {deploy.branch!r} (nor "
            f"{remote}/{deploy.branch}); promote copies what {env} runs, so publish first"
        )
    source = recorded_source(files)
    if source is None:
        raise PromoteError(
            f"the deploy branch {deploy.branch!r} does not record the source commit it was "
            "rendered from (hydrator.metadata): publish it with servegen first"
        )
    try:
        commit = git.resolve_commit(repo, source)
    except GitError:
        raise PromoteError(
            f"the deploy branch was rendered from {source[:12]}, which this clone does not "
            "have: fetch it first"
        ) from None
    in_env = models_by_environment(files).get(env, set())
    with exported(repo, root, commit) as dest:
        then = validate_repository(dest)
    return {
        spec.name: version_of(spec.environments[env])
        for spec in then.specs
        if spec.name in in_env and env in spec.environments
    }


def _check_published(
    spec: ValidatedSpec, env: str, published: Mapping[str, ModelVersion], validated: Validated
) -> None:
    now = version_of(spec.environments[env])
    then = published.get(spec.name)
    branch = validated.config.deploy.branch
    if then is None:
        raise PromoteError(
            f"{spec.path}: {spec.name} is not published in {env} on the deploy branch "
            f"{branch!r}: publish {env} first, then promote what it runs"
        )
    if then != now:
        raise PromoteError(
            f"{spec.path}: {spec.name} in {env} is not what is published for {env}: the "
            f"deploy branch {branch!r} has {then}, the spec says {now}; publish {env} "
            "first, then promote what it runs"
        )


# --- what is live ---------------------------------------------------------------------


def check_live(root: Path, config: Config, env: str, models: Sequence[str]) -> str:
    """Refuse unless `env` is live for `models` as `servegen status` reads it; a summary.

    Live: Flux applied the published deploy commit (or one giving `env` the same files)
    and reports Ready, and each model is ready. Without `flux:` in servegen.yaml nothing
    says what the cluster applied, so that is refused too. Raises ClusterError (exit 3)
    when the cluster cannot be read.
    """
    from generator.status import environment_status  # the client only when asked

    if config.flux is None:  # known before asking the cluster anything
        raise PromoteError(
            f"cannot tell whether {env} is live: Flux is not configured (no `flux:` in "
            "servegen.yaml), so nothing says which deploy commit the cluster applied"
        )
    status, notes = environment_status(root, config, env)
    if status is None:
        raise PromoteError(f"cannot tell whether {env} is live: {'; '.join(notes)}")
    problems = []
    if not status.in_sync:
        problems.append(f"not in sync: {printable(status.message)}")
    reports = {m.name: m for m in status.models}
    for name in models:
        report = reports.get(name)
        if report is None:
            problems.append(f"{name}: not in the status of {env}")
        elif not report.ready:
            problems.append(f"{name}: not ready: {printable(report.message)}")
    if problems:
        raise PromoteError(
            f"{env} is not live in context {status.context!r} (as `servegen status --env "
            f"{env}` reads it); promote once it is:\n"
            + "\n".join(problems)  # the CLI indents every further line of a message
        )
    applied = printable(status.applied_revision or "")
    return f"{env} is live: Flux applied {applied}; ready: {', '.join(models)}"


# --- editing --------------------------------------------------------------------------


def _promote_spec(
    root: Path, spec: ValidatedSpec, request: PromoteRequest, files: dict[str, _File]
) -> tuple[str, ...]:
    """Edit the spec's file (in `files`) so the target runs the source's values."""
    entry = files.get(spec.path)
    if entry is None:
        text = read_spec(root, spec.path)
        entry = files[spec.path] = _File(spec.path, text, text)
    source, target = spec.environments[request.source], spec.environments[request.target]
    wanted = [("spec", name) for name in spec.runtime.spec_overrides]
    # `serve` fields that are part of the model version are always promoted.
    wanted += [("serve", name) for name in source.version_serve_fields]
    wanted += [("serve", name) for name in request.serve if ("serve", name) not in wanted]
    changed = []
    for part, name in wanted:
        new, old = _effective(source, part, name), _effective(target, part, name)
        if new == old:
            continue
        where = ("environments", request.target, part, name)
        try:
            if new is None and _effective(spec.base, part, name) is None:
                # Back to the base's default: drop the target's override, not pin null.
                entry.text = remove_key(entry.text, spec.document.index, where)
            else:
                entry.text = set_value(entry.text, spec.document.index, where, new)
        except EditError as exc:  # "4:44: ..." (a position) or a sentence: name the file
            separator = "" if str(exc)[:1].isdigit() else " "
            raise EditError(f"{spec.path}:{separator}{exc}") from None
        changed.append(f"{part}.{name}")
    return tuple(changed)


def _effective(doc: Any, part: str, name: str) -> Any:
    model = getattr(doc, part)
    if name not in type(model).model_fields:
        raise PromoteError(
            f"serve has no field {name!r} in {doc.kind} "
            f"(fields: {', '.join(type(model).model_fields)})"
        )
    return model.model_dump(mode="json", exclude_unset=False).get(name)


def _check_result(
    validated: Validated,
    edits: Sequence[FileEdit],
    request: PromoteRequest,
    promoted: set[str],
) -> None:
    """The edited files validate; a promoted model's target runs the source's version;
    nothing else moved (another model of the same file keeps its own versions)."""
    before = {spec.name: spec for spec in validated.specs}
    for edit in edits:
        source = parse_source(edit.path, edit.new.encode("utf-8"))
        if isinstance(source, Diagnostic):
            raise InvalidInputError([source])
        result = validate_file(source, validated.config)
        errors = [d for d in result.diagnostics if d.severity == "error"]
        if errors:
            raise InvalidInputError(errors)
        for spec in result.specs:
            old = before[spec.name]
            for env, doc in spec.environments.items():
                expected = old.environments[env]
                if env == request.target and spec.name in promoted:
                    expected = old.environments[request.source]
                if version_of(doc) != version_of(expected):
                    raise PromoteError(
                        f"{edit.path}: after editing, {spec.name} in {env} would run "
                        f"{version_of(doc)}, not {version_of(expected)}; edit it by hand"
                    )


# --- doing it -------------------------------------------------------------------------


def apply(plan_: Plan, root: Path, *, commit: bool = False) -> Plan:
    """Write the edited files (and commit them when asked); return the plan as done."""
    repo = None
    paths = [edit.path for edit in plan_.edits]
    if commit and paths:
        repo = git.open_repo(root)
        prefix = repository_prefix(repo, root)
        paths = [f"{prefix}/{path}" if prefix else path for path in paths]
        busy = git.operation_in_progress(repo)
        if busy:  # `git commit --only` is refused then, after the files were written
            raise PromoteError(f"a {busy} is in progress: finish or abort it first")
        dirty = git.uncommitted_paths(repo, paths)
        if dirty:
            raise PromoteError(
                f"{', '.join(dirty)} has uncommitted changes: commit or stash them first, "
                "so the promotion commit holds only the promoted values"
            )
    # A file saved since it was read (an editor, another promote) keeps that save: every
    # file is compared with what the plan read before any is written.
    for edit in plan_.edits:
        if read_spec(root, edit.path) != edit.old:
            raise PromoteError(
                f"{edit.path} changed since promote read it; nothing was written, run it again"
            )
    for edit in plan_.edits:
        target = root / edit.path
        mode = target.stat().st_mode & 0o777
        atomic_write(target, _spec_bytes(root, edit.path, edit.new), folder_exists=True)
        target.chmod(mode)
    if repo is None:
        return plan_
    sha = git.commit_paths(repo, paths, plan_.message())
    return Plan(plan_.source, plan_.target, plan_.promotions, plan_.current, plan_.edits, sha)
