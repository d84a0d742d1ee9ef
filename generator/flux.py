"""Flux objects that make a cluster follow one environment of the deploy branch.

Per environment, all in flux/<env>/:
- a GitRepository on the deploy branch;
- the Kustomization `<name>-<env>` applying ./clusters/<env> (the models) with pruning
  and health checks that work for these kinds: Deployments report kstatus conditions;
  InferenceServices get a CEL `healthCheckExprs` on their Ready condition, KubeAI Models
  (no conditions) one on status.replicas.ready, and Models that may scale to zero are
  not health-checked at all (they would never become ready). It depends on the -flux
  Kustomization below, so it starts a revision with that revision's health checks;
- the Kustomization `<name>-<env>-flux` applying ./flux/<env> itself. Applied once by
  hand (`kubectl apply -k flux/<env>`), it keeps these objects, the health checks above
  included, in step with the deploy branch from then on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generator import outtree
from generator.config import Config, Flux
from generator.k8sformats import LABEL_VALUE
from generator.render import ModelRender
from runtimes.base import Problem

KUBEAI_MODEL_READY = "has(status.replicas) && status.replicas.ready >= 1"
# kstatus (fluxcd/cli-utils v1.2.1 pkg/kstatus/status/status.go) calls an object with no
# condition it knows Current: an InferenceService KServe has not reconciled yet (no
# status at all) would pass. Its Ready condition says what it is.
KSERVE_ISVC_READY = (
    "has(status.conditions) && status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')"
)
_EXPRESSIONS = {
    "Model": ("kubeai.org/v1", KUBEAI_MODEL_READY),
    "InferenceService": ("serving.kserve.io/v1beta1", KSERVE_ISVC_READY),
}
CHECKED_KINDS = {"Deployment", "InferenceService", "Model"}


def _health_checks(models: Sequence[ModelRender], environment: str) -> list[dict[str, str]]:
    checks = []
    for model in models:
        rendered = model.environments.get(environment)
        if rendered is None:
            continue
        for obj in rendered.objects:
            if obj["kind"] not in CHECKED_KINDS:
                continue
            if obj["kind"] == "Model" and int(obj["spec"].get("minReplicas", 0)) < 1:
                continue  # scale-to-zero: never "ready" while idle
            checks.append(
                {
                    "apiVersion": obj["apiVersion"],
                    "kind": obj["kind"],
                    "name": obj["metadata"]["name"],
                    "namespace": obj["metadata"]["namespace"],
                }
            )
    return sorted(checks, key=lambda c: (c["kind"], c["namespace"], c["name"]))


def object_names(flux: Flux, environment: str) -> tuple[str, str]:
    """The names of an environment's GitRepository and Kustomization (one name), and of
    the Kustomization that applies its flux folder."""
    name = f"{flux.name}-{environment}"
    return name, f"{name}-flux"


def config_problems(config: Config) -> list[Problem]:
    """What in servegen.yaml's `flux:` Flux cannot work with (paths point into it)."""
    flux = config.flux
    if flux is None:
        return []
    problems = []
    if flux.url.startswith("ssh://") and flux.secret_ref is None:
        # fluxcd/pkg git/options.go AuthOptions.Validate, what source-controller checks
        # before it clones: ssh needs `identity` and `known_hosts`, only a Secret's.
        problems.append(
            Problem(
                ("flux", "url"),
                "an ssh:// URL needs flux.secret_ref: Flux clones over SSH only with the "
                "identity and known_hosts of that Secret, and fails without them",
            )
        )
    return problems + _name_problems(config, flux)


def _name_problems(config: Config, flux: Flux) -> list[Problem]:
    """kustomize-controller v1.9.4 (internal/controller/kustomization_controller.go,
    through fluxcd/pkg ssa SetOwnerLabels) labels every object a Kustomization applies
    with `kustomize.toolkit.fluxcd.io/name: <its name>`. A label value holds at most 63
    characters, so a Kustomization with a longer name applies nothing at all
    (fluxcd/flux2#2004): the API server refuses every object it labels."""
    limit = LABEL_VALUE.max_length
    environment = max(config.environments, key=len)  # the longest names are its own
    longest = object_names(flux, environment)[1]
    if len(longest) <= limit:
        return []
    room = limit - (len(longest) - len(flux.name))
    advice = (
        f"use a flux.name of at most {room} characters"
        if room > 0
        else f"use a shorter environment name than {environment!r}"
    )
    message = (
        f"the Flux Kustomization {longest!r} has a name of {len(longest)} characters; "
        "Flux labels every object it applies with that name, and a label value holds at "
        f"most {limit}, so it would apply nothing: {advice}"
    )
    return [Problem(("flux", "name"), message)]


def flux_objects(
    models: Sequence[ModelRender], config: Config, environment: str
) -> list[dict[str, Any]]:
    flux: Flux | None = config.flux
    if flux is None:
        return []
    name, sync_name = object_names(flux, environment)
    source: dict[str, Any] = {
        "interval": flux.interval,
        "url": flux.url,
        "ref": {"branch": config.deploy.branch},
    }
    if flux.secret_ref:
        source["secretRef"] = {"name": flux.secret_ref}
    checks = _health_checks(models, environment)
    spec = _kustomization_spec(flux, name, f"./{outtree.cluster_dir(environment)}")
    # kustomize-controller v1.9.4 runs both Kustomizations of a new revision at once, and
    # this one reads its spec when it starts (kustomization_controller.go Reconcile): a
    # model removed or renamed was pruned, then waited for under the old health checks
    # until the timeout. A dependency on the same source holds it until the -flux one
    # has applied this revision (checkDependencies), so it starts with the new checks.
    spec["dependsOn"] = [{"name": sync_name}, *({"name": dep} for dep in flux.depends_on)]
    if checks:
        spec["healthChecks"] = checks
    kinds = sorted({c["kind"] for c in checks} & _EXPRESSIONS.keys())
    if kinds:
        spec["healthCheckExprs"] = [
            {"apiVersion": _EXPRESSIONS[k][0], "kind": k, "current": _EXPRESSIONS[k][1]}
            for k in kinds
        ]
    labels = {"app.kubernetes.io/managed-by": "servegen"}
    metadata = {"name": name, "namespace": flux.namespace, "labels": labels}
    # kustomize-controller v1.9.4 (fluxcd/pkg ssa/manager_wait.go): a health check whose
    # target is gone counts as NotFound until the timeout, and objects applied once by
    # hand are never updated from git. So the objects carrying the health checks are
    # themselves applied from the deploy branch, by a Kustomization that includes itself.
    sync = _kustomization_spec(flux, name, f"./{outtree.flux_dir(environment)}")
    kustomization = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization"}
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": metadata,
            "spec": source,
        },
        {**kustomization, "metadata": metadata, "spec": spec},
        {**kustomization, "metadata": {**metadata, "name": sync_name}, "spec": sync},
    ]


def _kustomization_spec(flux: Flux, source: str, path: str) -> dict[str, Any]:
    """A Flux Kustomization applying `path` of the GitRepository `source`, pruning."""
    return {
        "interval": flux.interval,
        "path": path,
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": source},
        "timeout": flux.timeout,
        "wait": False,
    }
