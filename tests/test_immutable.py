"""Changes the cluster refuses in place: found against the deploy branch by diff and publish."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator import cli
from generator.immutable import tree_changes, tree_objects
from generator.pipeline import build
from tests.conftest import EXAMPLES
from tests.specrepo import TINYLLAMA, commit_all, edit, make_spec_repo, tip

pytestmark = pytest.mark.usefixtures("isolated_git")


def test_trees_are_read_back_as_the_cluster_receives_them(crds_dir: Path) -> None:
    """The overlay reading (namespace, labels, patches, deletes) equals the render."""
    result = build(EXAMPLES, crds=[crds_dir], keep_objects=True)
    read = tree_objects(result.files)
    for env in result.config.environments:
        rendered = {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o
            for m in result.models
            if env in m.environments
            for o in m.environments[env].objects
        }
        assert read[env] == rendered


def files_after(
    example_repo: Path, crds_dir: Path, path: str, old: str, new: str
) -> dict[str, bytes]:
    edit(example_repo / path, old, new)
    return dict(build(example_repo, crds=[crds_dir]).files)


@pytest.mark.parametrize(
    ("path", "old", "new", "field"),
    [
        (
            TINYLLAMA,
            "replication: 256",
            "replication: 512",
            "spec.loadBalancing.prefixHash.replication",
        ),
        (
            "specs/kserve/bert-sentiment.yaml",
            "scaling: {min_replicas: 1, max_replicas: 3, scale_metric: cpu, scale_target: 70}",
            "deployment_mode: Knative\n  scaling: {min_replicas: 1, max_replicas: 3}",
            "metadata.annotations[serving.kserve.io/deploymentMode]",
        ),
    ],
    ids=["prefix-hash-replication", "kserve-deployment-mode"],
)
def test_refused_updates_are_found(
    example_repo: Path, crds_dir: Path, path: str, old: str, new: str, field: str
) -> None:
    before = build(example_repo, crds=[crds_dir]).files
    after = files_after(example_repo, crds_dir, path, old, new)
    found = tree_changes(before, after)
    assert {c.field for c in found} == {field}
    assert {c.environment for c in found} == {"dev", "prod"}


def test_cache_profile_and_its_url_are_fixed_once_set(example_repo: Path, crds_dir: Path) -> None:
    cached = files_after(
        example_repo,
        crds_dir,
        TINYLLAMA,
        "  resource_profile: cpu\n",
        "  resource_profile: cpu\n  cache_profile: fast\n",
    )
    other = files_after(
        example_repo, crds_dir, TINYLLAMA, "cache_profile: fast", "cache_profile: slow"
    )
    (change,) = [c for c in tree_changes(cached, other) if c.environment == "dev"]
    assert (change.field, change.old, change.new) == ("spec.cacheProfile", "fast", "slow")
    assert "kubeai.org_models.yaml: cacheProfile is immutable" in change.rule
    moved = files_after(
        example_repo, crds_dir, TINYLLAMA, "TinyLlama-1.1B-Chat-v1.0", "TinyLlama-1.1B-Chat-v0.6"
    )
    fields = {c.field for c in tree_changes(other, moved) if c.environment == "dev"}
    assert fields == {"spec.url"}
    # Dropped, the CRD lets it through, but KubeAI keeps its cache finalizer for good.
    dropped = files_after(example_repo, crds_dir, TINYLLAMA, "  cache_profile: slow\n", "")
    (change,) = [c for c in tree_changes(moved, dropped) if c.environment == "dev"]
    assert (change.field, change.old, change.new) == ("spec.cacheProfile", "slow", "(none)")
    assert change.rule.endswith("the Model could never be deleted")


def test_mutable_changes_and_new_objects_are_not_flagged(
    example_repo: Path, crds_dir: Path
) -> None:
    before = build(example_repo, crds=[crds_dir]).files
    after = files_after(example_repo, crds_dir, TINYLLAMA, "max_replicas: 2", "max_replicas: 3")
    assert tree_changes(before, after) == []
    assert tree_changes({}, after) == []
    assert tree_changes({"models/x/overlays/dev/kustomization.yaml": b"{{"}, after) == []


def run(
    work: Path, crds: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = cli.main(["-C", str(work), *args, "--crds", str(crds)])
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_refuses_then_allows_with_opt_in_and_diff_warns(
    tmp_path: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = make_spec_repo(tmp_path)
    assert run(work, crds_dir, capsys, "publish")[0] == 0
    first = tip(work)
    edit(work / TINYLLAMA, "replication: 256", "replication: 512")
    commit_all(work, "More prefix-hash replication")

    code, out, err = run(work, crds_dir, capsys, "diff", "--base", "HEAD~1")
    assert code == 0
    assert "warning: needs a replacement: dev: Model kubeai/tinyllama-chat: " in out
    assert "kubectl -n kubeai-system delete models.kubeai.org tinyllama-chat" in out

    code, out, err = run(work, crds_dir, capsys, "publish")
    assert code == 1 and tip(work) == first
    assert "the cluster would refuse these updates" in err
    assert (
        "prod: Model kubeai-system/tinyllama-chat: spec.loadBalancing.prefixHash.replication" in err
    )
    assert "(256 -> 512)" in err and "--allow-replace" in err

    code, out, err = run(work, crds_dir, capsys, "publish", "--allow-replace")
    assert code == 0 and tip(work) != first
    assert "publishing changes that need a replacement" in err


@pytest.mark.parametrize(
    "files",
    [
        {"models/m/overlays/dev/kustomization.yaml": b"- a list\n"},
        {"models/m/overlays/dev/kustomization.yaml": b"namespace: x\nresources: [../../base]\n"},
        {
            "models/m/overlays/dev/kustomization.yaml": b"namespace: x\nresources: [a.yaml]\n"
            b"patches: [{path: p.yaml, target: {kind: Model, name: m}}]\n",
            "models/m/overlays/dev/a.yaml": b"kind: Model\nmetadata: {name: m}\n",
            "models/m/overlays/dev/p.yaml": b"- {op: move, path: /spec}\n",
        },
        {"models/m/overlays/dev/kustomization.yaml": b"\xff\xfe"},
        {"models/m/overlays/dev/kustomization.yaml": b"resources: [../../../../etc/passwd]\n"},
    ],
    ids=["not-a-mapping", "missing-base", "unknown-patch-op", "not-utf8", "path-escape"],
)
def test_unreadable_deploy_trees_are_skipped(
    files: dict[str, bytes], example_repo: Path, crds_dir: Path
) -> None:
    """A deploy branch servegen did not write warns about nothing and never crashes."""
    assert tree_objects(files) == {}
    assert tree_changes(files, build(example_repo, crds=[crds_dir]).files) == []
