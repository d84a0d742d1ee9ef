"""`servegen status`: is what was merged live, and is every model ready?

Three inputs meet here:
- the **plan** (generator/statusplan.py): which objects each model has and where,
  from the render;
- the **deploy branch** (git): the commit last published, and for any commit Flux
  reports, the source commit it was rendered from (`Source-Commit` trailer, else the
  `drySha` of its `hydrator.metadata`);
- the **cluster** (generator/kube.py): one list per (kind, namespace) collection, then,
  with `--wait`, one watch per collection from the list's resourceVersion (for a kind
  not served yet, discovery asked again until it is).

`evaluate()` is a pure function of the three, re-run after every watch event.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator import git
from generator.config import Config
from generator.errors import ClusterError, GitError, InvalidInputError
from generator.kube import Cluster, Gone, Interrupted, Listing, Object, connect
from generator.outtree import in_environment, models_by_environment
from generator.pipeline import stored_build
from generator.publish import METADATA_FILE, recorded_source
from generator.readiness import (
    Malformed,
    Readiness,
    at,
    condition,
    condition_text,
    deployment,
    inference_service,
    kubeai_model,
)
from generator.render import ModelRender, duplicate_objects, render_all
from generator.snapshot import on_commit
from generator.statusplan import (
    SERVEGEN_LABEL,
    SPEC_LABEL,
    EnvironmentPlan,
    Kind,
    ModelPlan,
    Ref,
    environment_plan,
)
from generator.validate import validate_repository

DEFAULT_REMOTE = "origin"
MAX_DROPS = 5  # consecutive dropped watch connections before giving up
# With --wait, how often discovery is asked again about a kind the cluster did not serve:
# a CRD applied by the same Flux reconcile (KubeAI's, KServe's) appears minutes into a
# first deploy, and no watch can report a kind that is not served yet.
REDISCOVER_SECONDS = 5.0
# fluxcd/source-controller v1 (api/v1 GitRepository): artifact revisions are
# "<branch>@sha1:<hex>" (older releases wrote "<branch>/<hex>").
_REVISION = re.compile(r"(?:^|[@/:])([0-9a-f]{40}|[0-9a-f]{64})$")


# --------------------------------------------------------------------------- git side


@dataclass
class DeployHistory:
    """The deploy branch as this clone knows it; answers "which source is commit X?"."""

    repo: git.Repo | None
    remote: str | None
    tip: str | None
    files: dict[str, bytes]
    notes: list[str] = field(default_factory=list)
    _sources: dict[str, str | None] = field(default_factory=dict)
    _fetched: set[str] = field(default_factory=set)
    _same: dict[tuple[str, str], bool] = field(default_factory=dict)

    def deployed_models(self, environment: str) -> set[str] | None:
        if self.tip is None:
            return None
        return models_by_environment(self.files).get(environment, set())

    def source_of(self, commit: str | None) -> str | None:
        """The source commit a deploy commit was rendered from, or None if unknown."""
        if commit is None or self.repo is None:
            return None
        if commit not in self._sources:
            self._sources[commit] = self._read_source(commit)
        return self._sources[commit]

    def _known(self, commit: str) -> bool:
        assert self.repo is not None
        try:
            git.resolve_commit(self.repo, commit)
            return True
        except GitError:
            pass
        if self.remote is not None and commit not in self._fetched:
            self._fetched.add(commit)
            return git.fetch_commit(self.repo, self.remote, commit)
        return False

    def _read_source(self, commit: str) -> str | None:
        assert self.repo is not None
        if not self._known(commit):
            return None
        info = git.commit_info(self.repo, commit)
        for key, value in info.trailers:
            if key == "Source-Commit" and re.fullmatch(r"[0-9a-f]{40,64}", value):
                return value
        files = git.read_tree_files(self.repo, commit, skip_special=True)
        return recorded_source(files)

    def same_for(self, environment: str, applied: str) -> bool:
        """True when `applied` is an older publish that gives `environment` the same files."""
        key = (environment, applied)
        if key not in self._same:  # --wait asks after every event: read git once
            self._same[key] = self._compare(environment, applied)
        return self._same[key]

    def _compare(self, environment: str, applied: str) -> bool:
        if self.repo is None or self.tip is None or not self._known(applied):
            return False
        if not git.is_ancestor(self.repo, applied, self.tip):
            return False
        old = git.read_tree_files(self.repo, applied, skip_special=True)
        return _environment_files(old, environment) == _environment_files(self.files, environment)


def _environment_files(files: Mapping[str, bytes], environment: str) -> dict[str, bytes]:
    return {p: d for p, d in files.items() if p != METADATA_FILE and in_environment(p, environment)}


def deploy_history(root: Path, config: Config, fetch: bool = True) -> DeployHistory:
    """The deploy branch's tip: the remote's when there is a remote, else the local one."""
    branch = config.deploy.branch
    try:
        repo = git.open_repo(root)
    except GitError as exc:
        return DeployHistory(None, None, None, {}, [f"no deploy branch to compare: {exc.message}"])
    remote_name = config.deploy.remote or DEFAULT_REMOTE
    # Without fetching, missing commits are not fetched one by one either.
    remote = remote_name if fetch and git.remote_url(repo, remote_name) else None
    notes: list[str] = []
    tip = None
    if remote is not None:
        try:
            tip = git.fetch_branch(repo, remote, branch)
        except GitError as exc:
            notes.append(f"{exc.message}; using the local {branch!r} branch")
    if tip is None:
        tip = git.branch_sha(repo, branch)
    if tip is None:
        notes.append(f"nothing published yet: no {branch!r} branch")
        return DeployHistory(repo, remote, None, {}, notes)
    files = git.read_tree_files(repo, tip, skip_special=True)
    return DeployHistory(repo, remote, tip, files, notes)


# --------------------------------------------------------------------------- the render


def render_models(root: Path) -> tuple[Config, list[ModelRender]]:
    """Every model of `root`, each object where the cluster receives it.

    Where objects live is all status needs. The build cache's build of these very
    inputs has it (a `render` or `publish` of the same commit on this machine, or a CI
    cache restored), and passed every check. Else `root` is validated and rendered,
    without the manifest checks and the file layout, which what was published passed
    already: then this is most of status's running time.
    """
    stored = stored_build(root)
    if stored is not None:
        return stored.config, list(stored.models)
    validated = validate_repository(root)
    if not validated.ok:
        raise InvalidInputError(validated.diagnostics)
    models = render_all(validated.specs, validated.config)
    duplicates = duplicate_objects(models)
    if duplicates:
        raise InvalidInputError(duplicates)
    return validated.config, models


def render_published(root: Path, history: DeployHistory) -> tuple[Config, list[ModelRender]]:
    """The render of the published source commit when this clone has it, else of `root`."""
    source = history.source_of(history.tip)
    if history.repo is None or source is None:
        return render_models(root)
    try:
        git.resolve_commit(history.repo, source)
    except GitError:
        history.notes.append(
            f"published source commit {source[:7]} is not in this clone; "
            "object locations come from the working tree"
        )
        return render_models(root)
    rendered, _ = on_commit(history.repo, root, source, render_models)
    return rendered


def environment_plans(
    root: Path, config: Config, names: Sequence[str], fetch: bool = True
) -> tuple[list[EnvironmentPlan], DeployHistory]:
    """What each named environment should run, from the render of what is published."""
    history = deploy_history(root, config, fetch=fetch)
    rendered_config, models = render_published(root, history)
    plans = [
        environment_plan(
            models,
            rendered_config,
            env,
            history.deployed_models(env),
            config.environments[env].context,
        )
        for env in names
        if env in rendered_config.environments
    ]
    for env in names:
        if env not in rendered_config.environments:
            history.notes.append(f"environment {env!r} is not in the published render")
    return plans, history


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class ModelStatus:
    name: str
    runtime: str
    ready: bool
    desired: int | None
    ready_replicas: int | None
    url: str
    message: str
    cluster_url: str | None = None
    missing: tuple[str, ...] = ()
    not_owned: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "runtime": self.runtime,
            "ready": self.ready,
            "replicas": {"ready": self.ready_replicas, "desired": self.desired},
            "url": self.url,
            "cluster_url": self.cluster_url,
            "message": self.message,
            "missing": list(self.missing),
            "not_owned": list(self.not_owned),
        }


@dataclass(frozen=True)
class Orphan:
    kind: str
    namespace: str
    name: str
    spec: str

    def to_json(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "spec": self.spec,
        }


@dataclass(frozen=True)
class EnvironmentStatus:
    name: str
    context: str
    in_sync: bool | None  # None: no Flux objects rendered, so nothing to compare
    published_commit: str | None
    published_source_commit: str | None
    applied_revision: str | None
    source_commit: str | None
    flux_ready: bool | None
    message: str
    models: tuple[ModelStatus, ...]
    orphans: tuple[Orphan, ...]
    # Flux gave up on this environment until its own spec changes: nothing to wait for.
    stalled: bool = False

    @property
    def ok(self) -> bool:
        return self.in_sync is not False and all(m.ready for m in self.models) and not self.orphans

    @property
    def settled(self) -> bool:
        """Waiting longer cannot change the verdict: ready, or stalled."""
        return self.ok or self.stalled

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "context": self.context,
            "in_sync": self.in_sync,
            "published_commit": self.published_commit,
            "published_source_commit": self.published_source_commit,
            "applied_revision": self.applied_revision,
            "source_commit": self.source_commit,
            "flux_ready": self.flux_ready,
            "message": self.message,
            "ready": self.ok,
            "stalled": self.stalled,
            "models": [m.to_json() for m in self.models],
            "orphans": [o.to_json() for o in self.orphans],
        }


# --------------------------------------------------------------------------- the snapshot


@dataclass
class Collection:
    """The latest known state of one (kind, namespace) in one context."""

    served: bool
    items: dict[str, Object]
    resource_version: str


CollectionKey = tuple[str, Kind, str]  # context, kind, namespace


@dataclass
class Snapshot:
    collections: dict[CollectionKey, Collection] = field(default_factory=dict)

    def get(self, context: str, ref: Ref) -> tuple[bool, Object | None]:
        collection = self.collections.get((context, ref.kind, ref.namespace))
        if collection is None or not collection.served:
            return False, None
        return True, collection.items.get(ref.name)

    def items(self, context: str, kind: Kind, namespace: str) -> list[Object]:
        collection = self.collections.get((context, kind, namespace))
        return [] if collection is None else list(collection.items.values())

    def record(self, key: CollectionKey, listing: Listing | None) -> None:
        if listing is None:
            self.collections[key] = Collection(False, {}, "")
        else:
            self.collections[key] = Collection(True, dict(listing.items), listing.resource_version)


def read_all(clusters: Mapping[str | None, Cluster], plans: Sequence[EnvironmentPlan]) -> Snapshot:
    """One list per collection the plans read."""
    snapshot = Snapshot()
    for plan in plans:
        cluster = clusters[plan.context]
        for kind, namespace in plan.reads:
            key = (cluster.context, kind, namespace)
            if key not in snapshot.collections:
                snapshot.record(key, cluster.list(kind, namespace))
    return snapshot


# --------------------------------------------------------------------------- evaluation


def _owned(obj: Object, model: str) -> bool:
    labels = at(obj, "metadata", "labels")
    return (
        isinstance(labels, dict)
        and labels.get(SERVEGEN_LABEL) == "servegen"
        and labels.get(SPEC_LABEL) == model
    )


def evaluate_model(model: ModelPlan, context: str, snapshot: Snapshot) -> ModelStatus:
    missing, not_owned, unserved = [], [], []
    for ref in model.objects:
        served, obj = snapshot.get(context, ref)
        if not served:
            unserved.append(ref)
        elif obj is None:
            missing.append(str(ref))
        elif not _owned(obj, model.name):
            not_owned.append(str(ref))

    def not_ready(message: str) -> ModelStatus:
        return ModelStatus(
            model.name, model.runtime, False, None, None, model.url, message,
            missing=tuple(missing), not_owned=tuple(not_owned),
        )  # fmt: skip

    primary = model.primary
    if primary is None:
        return not_ready("renders no object whose readiness servegen can read")
    if primary in unserved:
        return not_ready(
            f"the cluster does not serve {primary.kind} (no CRD installed?); "
            f"{primary.kind.kind}/{primary.name} cannot exist in namespace {primary.namespace}"
        )
    _, obj = snapshot.get(context, primary)
    if obj is None:
        return not_ready(f"{primary} not found (not applied yet?)")
    try:
        readiness = _readiness(primary, obj, context, snapshot)
    except Malformed as exc:
        return not_ready(f"{primary}: malformed status: {exc}")
    message = readiness.message
    if not_owned:
        message += f"; not owned by servegen: {', '.join(not_owned)}"
    if missing:
        message += f"; missing: {', '.join(missing)}"
    return ModelStatus(
        model.name,
        model.runtime,
        readiness.ready and not missing and not not_owned,
        readiness.desired,
        readiness.ready_replicas,
        model.url,
        message,
        readiness.cluster_url,
        tuple(missing),
        tuple(not_owned),
    )


def _readiness(primary: Ref, obj: Object, context: str, snapshot: Snapshot) -> Readiness:
    if primary.kind.kind == "Model":
        return kubeai_model(obj)
    if primary.kind.kind == "InferenceService":
        predictors = [
            d
            for d in snapshot.items(context, Kind("apps/v1", "Deployment"), primary.namespace)
            if at(d, "metadata", "labels", KSERVE_OWNER_LABEL) == primary.name
        ]
        return inference_service(obj, predictors)
    return deployment(obj)


# kserve v0.20.0 pkg/controller/v1beta1/inferenceservice/components/predictor.go
# (buildObjectMeta): what KServe makes for an InferenceService carries the
# InferenceService's own labels (servegen's included) and this one, naming it.
KSERVE_OWNER_LABEL = "serving.kserve.io/inferenceservice"
_INFERENCE_SERVICE = Kind("serving.kserve.io/v1beta1", "InferenceService")


def orphans(plan: EnvironmentPlan, context: str, snapshot: Snapshot) -> list[Orphan]:
    """servegen-labelled objects of the plan's kinds that no environment renders now,
    nor a controller makes for one that is rendered."""
    found = []
    namespaces = sorted({ns for _, ns in plan.reads})
    for namespace in namespaces:
        for kind in plan.orphan_kinds(namespace):
            for obj in snapshot.items(context, kind, namespace):
                labels = at(obj, "metadata", "labels")
                if not isinstance(labels, dict) or labels.get(SERVEGEN_LABEL) != "servegen":
                    continue
                name = str(obj["metadata"]["name"])
                owner = labels.get(KSERVE_OWNER_LABEL)
                if (
                    isinstance(owner, str)
                    and Ref(_INFERENCE_SERVICE, namespace, owner) in plan.expected
                ):
                    continue  # KServe's predictor of a rendered InferenceService
                if Ref(kind, namespace, name) not in plan.expected:
                    found.append(Orphan(kind.kind, namespace, name, str(labels.get(SPEC_LABEL))))
    return sorted(found, key=lambda o: (o.namespace, o.kind, o.name))


@dataclass(frozen=True)
class FluxState:
    ready: bool | None
    applied: str | None  # the deploy commit sha Flux applied
    revision: str | None  # as Flux wrote it
    message: str
    # Ready is Unknown (a reconcile under way) or waits for the -flux Kustomization:
    # what it applied last still stands (see flux_state).
    reconciling: bool = False
    stalled: bool = False


def flux_state(plan: EnvironmentPlan, context: str, snapshot: Snapshot) -> FluxState:
    if not plan.flux:
        return FluxState(None, None, None, "no `flux:` in servegen.yaml: applied revision unknown")
    kustomization, *sync = (r for r in plan.flux if r.kind.kind == "Kustomization")
    source = next(r for r in plan.flux if r.kind.kind == "GitRepository")
    served, obj = snapshot.get(context, kustomization)
    if not served:
        return FluxState(False, None, None, "the cluster does not serve Flux Kustomizations")
    if obj is None:
        return FluxState(False, None, None, f"Flux {kustomization} not found (not bootstrapped?)")
    try:
        # fluxcd/kustomize-controller v1 api/v1/kustomization_types.go: lastAppliedRevision
        # and a Ready condition (reason e.g. ReconciliationSucceeded, HealthCheckFailed).
        revision = at(obj, "status", "lastAppliedRevision")
        if revision is not None and not isinstance(revision, str):
            raise Malformed(f"status.lastAppliedRevision is {revision!r}, not a string")
        ready = condition(obj, "Ready")
    except Malformed as exc:
        return FluxState(False, None, None, f"Flux {kustomization}: malformed status: {exc}")
    match = _REVISION.search(revision or "")
    applied = match.group(1) if match else None
    if ready is None:
        message = "Kustomization has no Ready condition yet"
    else:
        message = f"Kustomization Ready={ready.get('status')}"
        text = condition_text(ready)
        message += f" ({text})" if text else ""
    _, repository = snapshot.get(context, source)
    if repository is not None:
        try:
            repo_ready = condition(repository, "Ready")
        except Malformed:
            repo_ready = None
        if repo_ready is not None and repo_ready.get("status") == "False":
            message += f"; GitRepository not ready ({condition_text(repo_ready)})"
    waiting = ready is not None and ready.get("reason") == DEPENDENCY_NOT_READY
    if waiting and sync:
        message += _dependency_text(snapshot.get(context, sync[0])[1], sync[0])
    stalls = [(ref, _stalled(snapshot.get(context, ref)[1])) for ref in (kustomization, *sync)]
    for ref, stall in stalls:
        if stall is not None:
            message += f"; {ref.name} Stalled ({stall})" if stall else f"; {ref.name} Stalled"
    stalled = any(stall is not None for _, stall in stalls)
    ok = ready is not None and ready.get("status") == "True"
    # kustomize-controller v1.9.4 kustomization_controller.go: lastAppliedRevision is
    # written only once a revision is applied and its health checks pass; Ready turns
    # Unknown at the start of every reconcile (the periodic ones too) and False with
    # DependencyNotReady while the -flux Kustomization reconciles. Neither undoes it.
    reconciling = ready is not None and (ready.get("status") == "Unknown" or waiting)
    return FluxState(ok, applied, revision, message, reconciling and not stalled, stalled)


def _stalled(obj: Any) -> str | None:
    """The reason text of a Kustomization's Stalled=True condition, if it is current;
    else None. kustomize-controller v1.9.4 (kustomization_controller.go) marks it Stalled
    when no retry can succeed (an invalid health check expression, a refused source or
    service account, a disabled feature gate) and reconciles again only when its spec
    changes. A condition from before the latest spec change (observedGeneration behind
    metadata.generation) is stale, as kstatus reads it."""
    try:
        stall = condition(obj, "Stalled")
    except Malformed:
        return None
    if stall is None or stall.get("status") != "True":
        return None
    observed = at(obj, "status", "observedGeneration")
    generation = at(obj, "metadata", "generation")
    if isinstance(observed, int) and isinstance(generation, int) and observed != generation:
        return None
    return condition_text(stall)


DEPENDENCY_NOT_READY = "DependencyNotReady"


def _dependency_text(obj: Any, ref: Ref) -> str:
    """Why the Kustomization a dependant waits for is not ready (a failed build of
    flux/<env> would otherwise be told only as "dependency ... is not ready")."""
    if obj is None:
        return f"; {ref} not found"
    try:
        ready = condition(obj, "Ready")
    except Malformed:
        return ""
    if ready is None or ready.get("status") == "True":
        return ""
    text = condition_text(ready)
    return f"; {ref.name} Ready={ready.get('status')}" + (f" ({text})" if text else "")


def evaluate(
    plan: EnvironmentPlan, context: str, snapshot: Snapshot, history: DeployHistory
) -> EnvironmentStatus:
    models = [evaluate_model(m, context, snapshot) for m in plan.models]
    models += [
        ModelStatus(
            name, "unknown", False, None, None, "", "on the deploy branch but not in the render"
        )
        for name in plan.unrendered
    ]
    flux = flux_state(plan, context, snapshot)
    published = history.tip
    in_sync: bool | None = None
    message = flux.message
    if plan.flux:
        if published is None:
            in_sync, message = False, f"{message}; nothing published on the deploy branch"
        elif flux.applied is None:
            in_sync = False
        elif flux.applied == published:
            in_sync = bool(flux.ready) or flux.reconciling
        elif history.same_for(plan.name, flux.applied):
            in_sync = bool(flux.ready) or flux.reconciling
            message += "; later publishes do not change this environment"
        else:
            in_sync = False
            message += f"; applied {flux.applied[:7]}, published {published[:7]}"
    return EnvironmentStatus(
        name=plan.name,
        context=context,
        in_sync=in_sync,
        published_commit=published,
        published_source_commit=history.source_of(published),
        applied_revision=flux.revision,
        source_commit=history.source_of(flux.applied),
        flux_ready=flux.ready,
        message=message,
        models=tuple(sorted(models, key=lambda m: m.name)),
        orphans=tuple(orphans(plan, context, snapshot)),
        stalled=flux.stalled,
    )


def environment_status(
    root: Path, config: Config, name: str, fetch: bool = True
) -> tuple[EnvironmentStatus | None, list[str]]:
    """One environment as `servegen status --env NAME` reads it now (no waiting).

    None when the environment is not in the published render; the notes say why.
    Raises ClusterError when the cluster cannot be reached or refuses a read.
    """
    plans, history = environment_plans(root, config, [name], fetch)
    if not plans:
        return None, history.notes
    (plan,) = plans
    cluster = connect(plan.context)
    snapshot = read_all({plan.context: cluster}, plans)
    return evaluate(plan, cluster.context, snapshot, history), history.notes


# --------------------------------------------------------------------------- waiting


@dataclass(frozen=True)
class _Change:
    key: CollectionKey
    type: str
    name: str
    obj: Object | None
    listing: Listing | None = None
    error: ClusterError | None = None


def _follow(
    cluster: Cluster,
    key: CollectionKey,
    resource_version: str,
    deadline: float,
    changes: queue.Queue[_Change],
    stop: threading.Event,
) -> None:
    """Watch one collection until the deadline; re-list on 410 Gone, resume on expiry."""
    _, kind, namespace = key
    version = resource_version
    drops = 0
    try:
        while not stop.is_set():
            left = int(deadline - time.monotonic()) + 1
            if left <= 1:
                return
            try:
                for event in cluster.watch(kind, namespace, version, left):
                    drops = 0
                    version = str(event.obj["metadata"].get("resourceVersion") or version)
                    if event.type != "BOOKMARK":
                        changes.put(_Change(key, event.type, event.name, event.obj))
                    if stop.is_set():
                        return
            except Interrupted as exc:
                drops += 1  # a dropped connection: resume from the last version seen
                if drops > MAX_DROPS:
                    raise ClusterError(
                        f"context {cluster.context!r}: the watch on {kind.kind} in namespace "
                        f"{namespace!r} keeps dropping ({exc})"
                    ) from None
            except Gone:
                listing = cluster.list(kind, namespace)
                version = listing.resource_version if listing else version
                changes.put(_Change(key, "RELIST", "", None, listing))
    except ClusterError as exc:
        changes.put(_Change(key, "ERROR", "", None, error=exc))


def _await_served(
    cluster: Cluster,
    key: CollectionKey,
    deadline: float,
    changes: queue.Queue[_Change],
    stop: threading.Event,
) -> None:
    """Ask discovery again every REDISCOVER_SECONDS until the collection's kind is
    served; then list it (the snapshot takes that list) and follow it as any other."""
    _, kind, namespace = key
    try:
        while not stop.wait(min(REDISCOVER_SECONDS, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                return
            cluster.forget(kind)
            listing = cluster.list(kind, namespace)
            if listing is not None:
                changes.put(_Change(key, "RELIST", "", None, listing))
                _follow(cluster, key, listing.resource_version, deadline, changes, stop)
                return
    except ClusterError as exc:
        changes.put(_Change(key, "ERROR", "", None, error=exc))


def wait(
    clusters: Mapping[str | None, Cluster],
    plans: Sequence[EnvironmentPlan],
    snapshot: Snapshot,
    report: Callable[[Snapshot], list[EnvironmentStatus]],
    timeout: float,
) -> list[EnvironmentStatus]:
    """Follow every collection with watches until all is well, or waiting cannot change
    anything (Flux stalled), or `timeout` passes."""
    statuses = report(snapshot)
    if all(s.settled for s in statuses):
        return statuses
    follower = Follower(clusters, snapshot, report)
    done = follower.run(lambda current: all(s.settled for s in current), time.monotonic() + timeout)
    return done or statuses


class Follower:
    """Watches every served collection of a snapshot (and waits for the others to be
    served) and re-reports after each change."""

    def __init__(
        self,
        clusters: Mapping[str | None, Cluster],
        snapshot: Snapshot,
        report: Callable[[Snapshot], list[EnvironmentStatus]],
    ) -> None:
        self.clusters = {c.context: c for c in clusters.values()}
        self.snapshot = snapshot
        self.report = report
        self.changes: queue.Queue[_Change] = queue.Queue()

    def wake(self) -> None:
        """Make run() look at `done` again now, without a cluster event."""
        self.changes.put(_Change(("", Kind("", ""), ""), "WAKE", "", None))

    def run(
        self, done: Callable[[list[EnvironmentStatus]], bool], deadline: float
    ) -> list[EnvironmentStatus]:
        """Until `done(statuses)` or the deadline; the last statuses (empty: no change)."""
        halt = threading.Event()
        for key, collection in sorted(self.snapshot.collections.items()):
            cluster = self.clusters[key[0]]
            if collection.served:
                target: Callable[..., None] = _follow
                args: tuple[Any, ...] = (cluster, key, collection.resource_version, deadline)
            else:
                target, args = _await_served, (cluster, key, deadline)
            threading.Thread(
                target=target,
                args=(*args, self.changes, halt),
                daemon=True,  # a watch blocked in a read must not keep the process alive
            ).start()
        statuses: list[EnvironmentStatus] = []
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    change = self.changes.get(timeout=left)
                except queue.Empty:
                    break
                _apply(self.snapshot, change)
                while not self.changes.empty():  # a burst of events: evaluate once
                    _apply(self.snapshot, self.changes.get_nowait())
                statuses = self.report(self.snapshot)
                if done(statuses):
                    break
        finally:
            halt.set()
        return statuses


def _apply(snapshot: Snapshot, change: _Change) -> None:
    if change.error is not None:
        raise change.error
    if change.type == "WAKE":
        return
    collection = snapshot.collections[change.key]
    if change.type == "RELIST":
        snapshot.record(change.key, change.listing)
    elif change.type == "DELETED":
        collection.items.pop(change.name, None)
    elif change.obj is not None:
        collection.items[change.name] = change.obj


def contexts(plans: Iterable[EnvironmentPlan]) -> list[str | None]:
    return list(dict.fromkeys(p.context for p in plans))
