"""What `servegen status` reads from a cluster, derived from what servegen renders.

Every place an object lives (kind, namespace, name) is taken from the rendered objects
of the build, exactly as the cluster receives them, and the Flux objects from
`flux_objects()`; nothing here computes a namespace. The read-only RBAC a status reader
needs (`rbac/<env>/`) is derived from the same plan, so it always covers what status
reads and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generator import outtree
from generator.config import Config
from generator.flux import flux_objects
from generator.render import ModelRender
from generator.yamlio import dump_documents


@dataclass(frozen=True, order=True)
class Kind:
    """A kind as servegen renders it: `apiVersion` and `kind`."""

    api_version: str
    kind: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def __str__(self) -> str:
        return f"{self.kind} ({self.api_version})"


# The object that says whether a model serves, in order of preference per model.
PRIMARY_KINDS = ("Model", "InferenceService", "Deployment")
SERVEGEN_LABEL = "app.kubernetes.io/managed-by"
SPEC_LABEL = "servegen.io/spec"
DEPLOYMENT = Kind("apps/v1", "Deployment")


@dataclass(frozen=True, order=True)
class Ref:
    kind: Kind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.kind}/{self.name} in namespace {self.namespace}"


@dataclass(frozen=True)
class ModelPlan:
    name: str
    runtime: str
    url: str  # the catalog's OpenAI base URL
    objects: tuple[Ref, ...]
    primary: Ref | None


@dataclass(frozen=True)
class EnvironmentPlan:
    name: str
    context: str | None
    models: tuple[ModelPlan, ...]
    unrendered: tuple[str, ...]  # on the deploy branch, but not in the render status used
    flux: tuple[Ref, ...]  # GitRepository, Kustomization (empty without `flux:`)
    reads: Mapping[tuple[Kind, str], None]  # (kind, namespace) collections to list/watch
    expected: frozenset[Ref]  # every object any environment renders (orphan check)

    def orphan_kinds(self, namespace: str) -> list[Kind]:
        """Primary kinds listed in `namespace`; servegen-labelled extras there are orphans."""
        return [k for (k, ns) in self.reads if ns == namespace and k.kind in PRIMARY_KINDS]


def _ref(obj: Mapping[str, Any]) -> Ref:
    metadata = obj["metadata"]
    return Ref(
        Kind(str(obj["apiVersion"]), str(obj["kind"])),
        str(metadata.get("namespace") or ""),
        str(metadata["name"]),
    )


def _primary(refs: Sequence[Ref]) -> Ref | None:
    for kind in PRIMARY_KINDS:
        for ref in refs:
            if ref.kind.kind == kind:
                return ref
    return None


def model_plan(model: ModelRender, environment: str) -> ModelPlan | None:
    rendered = model.environments.get(environment)
    if rendered is None:
        return None
    refs = tuple(_ref(obj) for obj in rendered.objects)
    return ModelPlan(model.name, model.runtime, rendered.endpoint.base_url, refs, _primary(refs))


def _reads(models: Iterable[ModelPlan], flux: Iterable[Ref]) -> dict[tuple[Kind, str], None]:
    reads: dict[tuple[Kind, str], None] = {}
    primaries: set[Kind] = set()
    namespaces: set[str] = set()
    for model in models:
        for ref in model.objects:
            reads[(ref.kind, ref.namespace)] = None
            namespaces.add(ref.namespace)
        if model.primary is not None:
            primaries.add(model.primary.kind)
            if model.primary.kind.kind == "InferenceService":
                # The predictor Deployment carries KServe's replica counts.
                reads[(DEPLOYMENT, model.primary.namespace)] = None
    # Orphans: servegen-labelled objects of these kinds in these namespaces.
    for kind in primaries:
        for namespace in namespaces:
            reads[(kind, namespace)] = None
    for ref in flux:
        reads[(ref.kind, ref.namespace)] = None
    return dict(sorted(reads.items()))


def environment_plan(
    models: Sequence[ModelRender],
    config: Config,
    environment: str,
    deployed: Iterable[str] | None = None,
    context: str | None = None,
) -> EnvironmentPlan:
    """The plan for one environment; `deployed` names the models the deploy branch has.

    `config` is the rendered one (Flux object names); `context` comes from the current
    servegen.yaml, so naming a context needs no new publish.
    """
    rendered = {m.name: m for m in models if environment in m.environments}
    names = sorted(set(deployed) if deployed is not None else set(rendered))
    plans = tuple(p for n in names if n in rendered if (p := model_plan(rendered[n], environment)))
    flux = tuple(_ref(obj) for obj in flux_objects(models, config, environment))
    expected = frozenset(
        _ref(obj) for m in models for env in m.environments.values() for obj in env.objects
    )
    return EnvironmentPlan(
        name=environment,
        context=context,
        models=plans,
        unrendered=tuple(n for n in names if n not in rendered),
        flux=flux,
        reads=_reads(plans, flux),
        expected=expected,
    )


# --------------------------------------------------------------------------- RBAC


def _plural(kind: Kind) -> str:
    # The kinds servegen renders or reads follow English plurals: deployments, services,
    # models, inferenceservices, kustomizations, gitrepositories.
    name = kind.kind.lower()
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


def rbac_objects(plan: EnvironmentPlan, config: Config) -> list[dict[str, Any]]:
    """A Role and RoleBinding per namespace status reads: list and watch, nothing else."""
    reader = config.environments[plan.name].status_reader
    if reader is None:
        return []
    by_namespace: dict[str, dict[str, set[str]]] = {}
    for kind, namespace in plan.reads:
        groups = by_namespace.setdefault(namespace, {})
        groups.setdefault(kind.group, set()).add(_plural(kind))
    name = f"servegen-status-{plan.name}"
    subject: dict[str, str] = {"kind": reader.kind, "name": reader.name}
    if reader.kind == "ServiceAccount":
        subject["namespace"] = str(reader.namespace)
    else:
        subject["apiGroup"] = "rbac.authorization.k8s.io"
    labels = {SERVEGEN_LABEL: "servegen"}
    out: list[dict[str, Any]] = []
    for namespace, groups in sorted(by_namespace.items()):
        metadata = {"name": name, "namespace": namespace, "labels": labels}
        rules = [
            {"apiGroups": [group], "resources": sorted(plurals), "verbs": ["list", "watch"]}
            for group, plurals in sorted(groups.items())
        ]
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata,
                "rules": rules,
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [subject],
            }
        )
    return out


RBAC_HEADER = (
    "# Generated by servegen from servegen.yaml: read-only access for `servegen status`.\n"
)


def rbac_files(models: Sequence[ModelRender], config: Config) -> dict[str, bytes]:
    """rbac/<env>/ for environments with a `status_reader`; flux/<env> includes it."""
    files: dict[str, bytes] = {}
    for env, settings in config.environments.items():
        if settings.status_reader is None:
            continue
        objects = rbac_objects(environment_plan(models, config, env), config)
        folder = outtree.rbac_dir(env)
        names = []
        for obj in objects:
            name = f"{obj['kind'].lower()}-{obj['metadata']['namespace']}.yaml"
            files[f"{folder}/{name}"] = (RBAC_HEADER + dump_documents([obj])).encode()
            names.append(name)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": sorted(names),
        }
        files[f"{folder}/{outtree.KUSTOMIZATION}"] = (
            RBAC_HEADER + dump_documents([kustomization])
        ).encode()
    return files
