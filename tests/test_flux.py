"""Flux objects: what Flux reconciles from the deploy branch carries the health checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from generator.config import Config
from generator.flux import config_problems, flux_objects
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


def test_models_wait_for_their_health_checks_and_judge_inference_services(
    example_repo: Path, crds_dir: Path, tmp_path: Path
) -> None:
    """kustomize-controller v1.9.4 reconciles both Kustomizations of a revision at once:
    the models' one must wait for the -flux one (same source: it waits until that one
    applied the revision), and an InferenceService with no status yet must not pass."""
    out = tmp_path / "out"
    write_tree(out, build(example_repo, crds=[crds_dir]).files)
    models = by_path(reconciled(out, "dev"))["./clusters/dev"]["spec"]
    assert models["dependsOn"][0] == {"name": "servegen-dev-flux"}
    assert models["sourceRef"]["name"] == "servegen-dev"
    sync = by_path(reconciled(out, "dev"))["./flux/dev"]["spec"]
    assert sync["sourceRef"] == models["sourceRef"] and "dependsOn" not in sync
    exprs = {e["kind"]: e for e in models["healthCheckExprs"]}
    assert exprs["InferenceService"] == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "current": "has(status.conditions) && "
        "status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
    }
    assert any(c["kind"] == "InferenceService" for c in models["healthChecks"])


def test_every_kustomization_name_fits_the_label_flux_gives_its_objects() -> None:
    """kustomize-controller labels each applied object with its Kustomization's name, a
    label value of at most 63 characters: the longest name servegen makes is judged,
    at the limit and one past it, and it is the name the objects really get."""

    def config(name: str) -> Config:
        return Config.model_validate(
            {
                "environments": {"dev": {}, "prod": {}},
                "flux": {"url": "https://example.com/repo", "name": name},
            }
        )

    fits = config("f" * (63 - len("-prod-flux")))
    names = [obj["metadata"]["name"] for obj in flux_objects([], fits, "prod")]
    assert max(map(len, names)) == 63
    assert config_problems(fits) == []
    beyond = config("f" * (64 - len("-prod-flux")))
    [problem] = config_problems(beyond)
    assert problem.path == ("flux", "name")
    assert "has a name of 64 characters" in problem.message
    assert "at most 53 characters" in problem.message


def test_an_ssh_url_with_a_secret_is_accepted() -> None:
    """The rule is about the missing Secret, not about ssh:// itself."""
    with_secret = Config.model_validate(
        {
            "flux": {"url": "ssh://git@github.com/org/repo", "secret_ref": "flux-ssh"},
        }
    )
    assert config_problems(with_secret) == []
