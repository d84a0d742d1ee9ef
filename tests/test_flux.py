"""Flux objects: what Flux reconciles from the deploy branch carries the health checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from generator.pipeline import build
from generator.write import write_tree
from tests.kustomize import kustomize

FLUX_KUSTOMIZATION = "kustomize.toolkit.fluxcd.io/v1"


def reconciled(output: Path, environment: str) -> list[dict[str, Any]]:
    """The objects Flux applies for flux/<env>, followed the way Flux follows them:
    each Kustomization's path, built with the real kustomize."""
    built = kustomize(output / "flux" / environment)
    return [obj for obj in built if obj["apiVersion"] == FLUX_KUSTOMIZATION]


def by_path(kustomizations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k["spec"]["path"]: k for k in kustomizations}


def test_flux_objects_reconcile_themselves(
    example_repo: Path, crds_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    write_tree(out, build(example_repo, crds=[crds_dir]).files)
    kustomizations = by_path(reconciled(out, "dev"))
    assert sorted(kustomizations) == ["./clusters/dev", "./flux/dev"]
    sync = kustomizations["./flux/dev"]
    assert sync["metadata"]["name"] == "servegen-dev-flux"
    assert sync["spec"]["prune"] is True and "healthChecks" not in sync["spec"]
    # The Kustomization that applies ./flux/dev is itself one of the objects there, and so
    # is the one carrying the models' health checks: both follow the deploy branch.
    models = kustomizations["./clusters/dev"]
    assert models["metadata"]["name"] == "servegen-dev"
    assert models["spec"]["healthChecks"]
    kinds = sorted(obj["kind"] for obj in kustomize(out / "flux" / "dev"))
    assert kinds == ["GitRepository", "Kustomization", "Kustomization"]


def test_a_removed_model_leaves_the_reconciled_health_checks(
    example_repo: Path, crds_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    write_tree(out, build(example_repo, crds=[crds_dir]).files)
    before = by_path(reconciled(out, "dev"))["./clusters/dev"]["spec"]["healthChecks"]
    assert {"kind": "Model", "name": "bge-reranker"}.items() <= next(
        c for c in before if c["name"] == "bge-reranker"
    ).items()
    (example_repo / "specs" / "kubeai" / "bge-reranker.yaml").unlink()
    write_tree(out, build(example_repo, crds=[crds_dir]).files)
    after = by_path(reconciled(out, "dev"))["./clusters/dev"]["spec"]["healthChecks"]
    assert [c["name"] for c in after] == [c["name"] for c in before if c["name"] != "bge-reranker"]
