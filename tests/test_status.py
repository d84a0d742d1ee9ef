"""`servegen status` with the real `kubernetes` client against a stand-in API server.

The published side is real git: a bare repository as the remote, the example specs
committed and published with `servegen publish --push`. The cluster side is
tests/kubeapi.py on loopback, reached through a kubeconfig file written here (token
auth). The test plays Flux and the controllers: it applies exactly the objects servegen
rendered, then scripts their status (not ready -> ready, failed, CRD missing, revision
behind) and reads what `status` makes of it.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generator import cli
from generator import status as status_module
from generator.check import ManifestChecker
from generator.flux import flux_objects
from generator.incremental import IncrementalBuild
from generator.pipeline import Build, build
from generator.render import render_all
from generator.statusplan import environment_plan, rbac_objects
from tests.cluster import apply_environment, flux_status, ready_status
from tests.conftest import EXAMPLES, REPO_ROOT
from tests.gitutil import sh
from tests.kubeapi import FakeKubeAPI
from tests.kustomize import kustomize
from tests.streams import pump_lines

ENV = "dev"
KUBEAI_MODEL = "tinyllama-chat"  # kubeai-text, min_replicas 1
SCALE_TO_ZERO = "nomic-embed"  # kubeai-text, min_replicas 0
VLLM_MODEL = "qwen-chat"  # vllmserve-text
KSERVE_MODEL = "bert-sentiment"  # huggingfaceserve


@pytest.fixture(autouse=True)
def isolated(isolated_git: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as server:
        yield server


def commit_all(work: Path, subject: str) -> str:
    """Commit, and push to the remote's default branch: only merged commits are published."""
    sh(work, "add", "-A")
    sh(work, "commit", "-q", "-m", subject)
    if sh(work, "remote"):
        sh(work, "push", "-q", "origin", "HEAD:main")
    return sh(work, "rev-parse", "HEAD")


def publish(work: Path, crds: Path) -> str:
    code = cli.main(["-C", str(work), "publish", "--push", "--allow-prune", "--crds", str(crds)])
    assert code == 0
    return sh(work, "rev-parse", "deploy")


@dataclass
class Live:
    work: Path
    api: FakeKubeAPI
    crds: Path
    deploy: str  # the deploy commit published
    source: str  # the spec commit it was rendered from
    result: Build

    def objects(self, kind: str, env: str = ENV) -> list[dict[str, Any]]:
        return [
            obj
            for m in self.result.models
            if env in m.environments
            for obj in m.environments[env].objects
            if obj["kind"] == kind
        ]

    def where(self, model: str, kind: str, env: str = ENV) -> tuple[str, str]:
        """(namespace, name) of a model's object, as servegen rendered it."""
        rendered = next(m for m in self.result.models if m.name == model)
        obj = next(o for o in rendered.environments[env].objects if o["kind"] == kind)
        return obj["metadata"]["namespace"], obj["metadata"]["name"]


@pytest.fixture
def live(tmp_path: Path, api: FakeKubeAPI, crds_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Live:
    remote = tmp_path / "remote.git"
    sh(tmp_path, "init", "-q", "--bare", str(remote))
    work = tmp_path / "specs-repo"
    sh(tmp_path, "clone", "-q", str(remote), str(work))
    shutil.copytree(EXAMPLES, work, dirs_exist_ok=True)
    source = commit_all(work, "Initial specs")
    sh(work, "push", "-q", "origin", "main")
    deploy = publish(work, crds_dir)
    result = build(work, crds=[crds_dir], keep_objects=True)
    apply_environment(api, result, ENV, deploy)
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return Live(work, api, crds_dir, deploy, source, result)


def status(live: Live, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what setup (publish) printed
    code = cli.main(["-C", str(live.work), "status", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def status_json(
    live: Live, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    code, out, err = status(live, capsys, "--env", ENV, "--format", "json", *args)
    assert code in (0, 1), err
    environments = json.loads(out)["environments"]
    assert [e["name"] for e in environments] == [ENV]
    env: dict[str, Any] = environments[0]
    return code, env


def model(env: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in env["models"] if m["name"] == name)
    return found


# --------------------------------------------------------------------------- all well


def test_everything_applied_and_ready_is_exit_0_with_the_documented_shape(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    code, env = status_json(live, capsys)
    assert code == 0, env
    assert env["in_sync"] is True
    assert env["published_commit"] == live.deploy
    assert env["applied_revision"] == f"deploy@sha1:{live.deploy}"
    assert env["source_commit"] == live.source
    assert env["published_source_commit"] == live.source
    assert env["orphans"] == [] and env["stalled"] is False
    assert set(env) == {
        "name",
        "context",
        "ready",
        "stalled",
        "in_sync",
        "flux_ready",
        "message",
        "published_commit",
        "published_source_commit",
        "applied_revision",
        "source_commit",
        "models",
        "orphans",
    }
    catalog = json.loads(sh(live.work, "show", "deploy:endpoints/dev.json"))
    urls = {m["name"]: m["base_url"] for m in catalog["models"]}
    assert {m["name"] for m in env["models"]} == set(urls)
    for m in env["models"]:
        assert set(m) == {
            "name",
            "runtime",
            "ready",
            "replicas",
            "url",
            "message",
            "cluster_url",
            "missing",
            "not_owned",
        }
        assert m["ready"] is True, m
        assert m["url"] == urls[m["name"]]
        assert m["missing"] == [] and m["not_owned"] == []
    assert model(env, KUBEAI_MODEL)["replicas"] == {"ready": 1, "desired": 1}
    assert model(env, SCALE_TO_ZERO)["message"].startswith("scaled to zero")
    isvc = model(env, KSERVE_MODEL)
    assert isvc["replicas"] == {"ready": 1, "desired": 1}
    namespace, _ = live.where(KSERVE_MODEL, "InferenceService")
    assert isvc["cluster_url"] == f"http://{KSERVE_MODEL}.{namespace}.example.com"


def test_only_reads_and_only_lists_each_collection_once(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = status_json(live, capsys)
    assert code == 0
    assert {method for method, _ in live.api.requests} == {"GET"}
    lists = [p for _, p in live.api.requests if "/namespaces/" in p]
    assert len(lists) == len(set(lists))
    assert not any("watch=" in p for p in lists)


def test_a_stored_build_of_the_published_commit_is_read_not_rendered(
    live: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a render of the published commit stored its build on this machine, status
    takes every object's place from it and renders no spec; the answer is the same."""
    renders: list[object] = []
    real = render_all

    def counting(*args: Any) -> Any:
        renders.append(args)
        return real(*args)

    monkeypatch.setattr("generator.status.render_all", counting)
    code, rendered = status_json(live, capsys)  # (publish stored a build with --crds only)
    assert code == 0 and len(renders) == 1
    assert cli.main(["-C", str(live.work), "render"]) == 0
    code, stored = status_json(live, capsys)
    assert code == 0 and len(renders) == 1
    assert stored == rendered


def test_what_the_working_tree_holds_beyond_the_published_commit_is_not_read(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clean checkout of the published commit is read in place; one with a spec
    removed (not committed) is not that commit, and the commit is read from git."""
    code, published = status_json(live, capsys)
    assert code == 0 and model(published, VLLM_MODEL)["ready"] is True
    (live.work / "specs" / "vllm" / "qwen-chat.yaml").unlink()
    code, now = status_json(live, capsys)
    assert code == 0 and now == published


def test_text_and_markdown_name_every_model(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(live, capsys, "--env", ENV)
    assert code == 0
    assert f"environment {ENV} (context test): in sync" in out
    assert f"ready      {KUBEAI_MODEL}  kubeai-text  1/1" in out
    code, out, _ = status(live, capsys, "--env", ENV, "--format", "markdown")
    assert code == 0
    assert out.startswith(f"### `{ENV}`: in sync")
    assert f"| `{VLLM_MODEL}` | vllmserve-text | yes |" in out


# --------------------------------------------------------------------------- not ready


def test_a_kubeai_model_with_no_ready_replica_is_exit_1(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, name = live.where(KUBEAI_MODEL, "Model")
    live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 0}})
    code, env = status_json(live, capsys)
    assert code == 1
    m = model(env, KUBEAI_MODEL)
    assert (m["ready"], m["replicas"], m["message"]) == (
        False,
        {"ready": 0, "desired": 1},
        "0/1 replicas ready",
    )
    assert env["in_sync"] is True  # applied, just not ready


def test_a_failed_rollout_and_a_failed_inference_service_say_why(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, name = live.where(VLLM_MODEL, "Deployment")
    live.api.set_status(
        "Deployment",
        namespace,
        name,
        {
            "observedGeneration": 1,
            "availableReplicas": 0,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{name}-5d" has timed out progressing.',
                }
            ],
        },
    )
    namespace, name = live.where(KSERVE_MODEL, "InferenceService")
    live.api.set_status(
        "InferenceService",
        namespace,
        name,
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "RevisionFailed",
                    "message": "Revision failed with message: container exited",
                }
            ]
        },
    )
    code, env = status_json(live, capsys)
    assert code == 1
    vllm = model(env, VLLM_MODEL)
    assert vllm["ready"] is False
    assert vllm["message"].startswith("failed: ProgressDeadlineExceeded: ReplicaSet")
    kserve = model(env, KSERVE_MODEL)
    assert kserve["ready"] is False
    assert kserve["message"] == (
        "failed: RevisionFailed: Revision failed with message: container exited"
    )


def test_cluster_text_cannot_inject_terminal_escapes(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, name = live.where(KSERVE_MODEL, "InferenceService")
    condition = {"type": "Ready", "status": "False", "reason": "X", "message": "\x1b[2Jgone\nnext"}
    live.api.set_status("InferenceService", namespace, name, {"conditions": [condition]})
    code, out, _ = status(live, capsys, "--env", ENV)
    assert code == 1
    assert "failed: X: \\x1b[2Jgone\\nnext" in out
    assert "\x1b" not in out


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_cluster_text_cannot_forge_a_workflow_command(
    live: Live, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """A GitHub runner reads `##[cmd]` anywhere in a line of the job's log."""
    namespace, name = live.where(KSERVE_MODEL, "InferenceService")
    condition = {"type": "Ready", "status": "False", "reason": "X", "message": "##[error]f"}
    live.api.set_status("InferenceService", namespace, name, {"conditions": [condition]})
    code, out, _ = status(live, capsys, "--env", ENV, "--format", fmt)
    assert code == 1 and "##[" not in out
    if fmt == "json":
        assert "failed: X: ##[error]f" in out.encode().decode("unicode_escape")
    else:
        assert "failed: X: #\\x23[error]f" in out


def test_missing_and_foreign_objects_are_named(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, service = live.where(VLLM_MODEL, "Service")
    live.api.delete("Service", namespace, service)
    namespace, deployment = live.where(VLLM_MODEL, "Deployment")
    stored = live.api.objects[("Deployment", namespace, deployment)]
    live.api.apply({**stored, "metadata": {**stored["metadata"], "labels": {"team": "other"}}})
    code, env = status_json(live, capsys)
    assert code == 1
    m = model(env, VLLM_MODEL)
    assert m["missing"] == [f"Service/{service} in namespace {namespace}"]
    assert m["not_owned"] == [f"Deployment/{deployment} in namespace {namespace}"]
    assert m["ready"] is False


def test_a_model_left_in_the_cluster_is_reported(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, _ = live.where(KUBEAI_MODEL, "Model")
    live.api.apply(
        {
            "apiVersion": "kubeai.org/v1",
            "kind": "Model",
            "metadata": {
                "name": "retired-model",
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": "servegen",
                    "servegen.io/spec": "retired-model",
                },
            },
            "spec": {"url": "hf://org/old", "engine": "VLLM", "features": ["TextGeneration"]},
        }
    )
    live.api.apply(
        {
            "apiVersion": "kubeai.org/v1",
            "kind": "Model",
            "metadata": {"name": "hand-made", "namespace": namespace},
        }
    )
    code, env = status_json(live, capsys)
    assert code == 1
    assert env["orphans"] == [
        {"kind": "Model", "namespace": namespace, "name": "retired-model", "spec": "retired-model"}
    ]
    assert all(m["ready"] for m in env["models"])


def test_a_missing_crd_is_reported_per_model_not_a_crash(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    live.api.uninstall("Model")
    code, env = status_json(live, capsys)
    assert code == 1
    kubeai = [m for m in env["models"] if m["runtime"] == "kubeai-text"]
    assert kubeai
    for m in kubeai:
        assert m["ready"] is False
        assert m["message"].startswith("the cluster does not serve Model (kubeai.org/v1)")
    assert all(m["ready"] for m in env["models"] if m["runtime"] != "kubeai-text")


def test_no_flux_in_the_cluster_is_out_of_sync(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    live.api.uninstall("Kustomization")
    live.api.uninstall("GitRepository")
    code, env = status_json(live, capsys)
    assert (code, env["in_sync"], env["applied_revision"]) == (1, False, None)
    assert env["message"].startswith("the cluster does not serve Flux Kustomizations")
    assert all(m["ready"] for m in env["models"])


@pytest.mark.parametrize(
    ("status_value", "expected"),
    [
        (
            {"replicas": {"all": 1, "ready": "one"}},
            "status.replicas.ready is 'one', not an integer",
        ),
        ({"replicas": [1, 1]}, "status.replicas.ready is not an object"),
        ("broken", "status.replicas.ready is not an object"),
    ],
)
def test_malformed_status_fields_become_messages(
    live: Live, capsys: pytest.CaptureFixture[str], status_value: Any, expected: str
) -> None:
    namespace, name = live.where(KUBEAI_MODEL, "Model")
    live.api.set_status("Model", namespace, name, status_value)
    code, env = status_json(live, capsys)
    assert code == 1
    m = model(env, KUBEAI_MODEL)
    assert m["ready"] is False
    assert m["message"] == f"Model/{name} in namespace {namespace}: malformed status: {expected}"


def test_malformed_flux_conditions_are_a_message(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, name = _kustomization(live)
    live.api.set_status("Kustomization", namespace, name, {"conditions": "Ready"})
    code, env = status_json(live, capsys)
    assert code == 1
    assert env["in_sync"] is False
    assert "malformed status: status.conditions is not a list" in env["message"]


# --------------------------------------------------------------------------- GitOps revisions


def _kustomization(live: Live) -> tuple[str, str]:
    obj = next(
        o
        for o in flux_objects(live.result.models, live.result.config, ENV)
        if o["kind"] == "Kustomization"
    )
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def test_flux_behind_the_published_commit_is_out_of_sync(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = live.work / "specs" / "vllm" / "qwen-chat.yaml"
    spec.write_text(spec.read_text().replace("labels: {team: assistants}", "labels: {team: chat}"))
    newer_source = commit_all(live.work, "Label qwen-chat")
    newer = publish(live.work, live.crds)
    assert newer != live.deploy
    code, env = status_json(live, capsys)
    assert code == 1
    assert env["in_sync"] is False
    assert env["published_commit"] == newer
    assert env["published_source_commit"] == newer_source
    assert env["applied_revision"] == f"deploy@sha1:{live.deploy}"
    assert env["source_commit"] == live.source
    assert f"applied {live.deploy[:7]}, published {newer[:7]}" in env["message"]

    namespace, name = _kustomization(live)
    live.api.set_status("Kustomization", namespace, name, flux_status(newer))
    code, env = status_json(live, capsys)
    assert (code, env["in_sync"], env["source_commit"]) == (0, True, newer_source)


def test_a_publish_that_changes_only_another_environment_keeps_this_one_in_sync(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    config = live.work / "servegen.yaml"
    config.write_text(
        config.read_text().replace(
            "annotations: {servegen.io/owner: platform-team}",
            "annotations: {servegen.io/owner: infra-team}",
        )
    )
    commit_all(live.work, "prod owner")
    newer = publish(live.work, live.crds)
    assert newer != live.deploy
    code, env = status_json(live, capsys)
    assert code == 0, env
    assert env["in_sync"] is True
    assert env["published_commit"] == newer
    assert "later publishes do not change this environment" in env["message"]


def test_a_failing_kustomization_is_out_of_sync(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, name = _kustomization(live)
    live.api.set_status(
        "Kustomization", namespace, name, flux_status(live.deploy, False, "HealthCheckFailed")
    )
    code, env = status_json(live, capsys)
    assert (code, env["in_sync"], env["flux_ready"]) == (1, False, False)
    assert "Ready=False (HealthCheckFailed: health check failed)" in env["message"]


def _flux_kustomizations(live: Live) -> list[tuple[str, str]]:
    """The models' Kustomization, then the one applying flux/<env>."""
    objects = flux_objects(live.result.models, live.result.config, ENV)
    found = [o["metadata"] for o in objects if o["kind"] == "Kustomization"]
    return [(m["namespace"], m["name"]) for m in found]


@pytest.mark.parametrize("reason", ["Progressing", "DependencyNotReady"])
def test_an_applied_commit_stays_in_sync_while_flux_reconciles(
    live: Live, capsys: pytest.CaptureFixture[str], reason: str
) -> None:
    """kustomize-controller v1.9.4 sets lastAppliedRevision only once a revision passed
    its health checks; Ready turns Unknown at every reconcile and False/DependencyNotReady
    while the -flux Kustomization reconciles. A live commit read as out of sync then."""
    (namespace, name), (sync_namespace, sync_name) = _flux_kustomizations(live)
    reconciling = flux_status(live.deploy, False, reason)
    reconciling["conditions"][0]["status"] = "Unknown" if reason == "Progressing" else "False"
    live.api.set_status("Kustomization", namespace, name, reconciling)
    failed = flux_status(live.deploy, False, "BuildFailed")
    live.api.set_status("Kustomization", sync_namespace, sync_name, failed)
    code, env = status_json(live, capsys)
    assert (code, env["in_sync"], env["flux_ready"]) == (0, True, False)
    if reason == "DependencyNotReady":  # what the dependency says, not only that it waits
        assert f"; {sync_name} Ready=False (BuildFailed: health check failed)" in env["message"]


def _stalled_status(live: Live, observed: int) -> dict[str, Any]:
    """What kustomize-controller v1.9.4 writes when a health check expression is invalid."""
    stalled: dict[str, Any] = flux_status(live.deploy, False, "InvalidCELExpression")
    stalled["conditions"].append(
        {"type": "Stalled", "status": "True", "reason": "InvalidCELExpression", "message": "bad"}
    )
    stalled["observedGeneration"] = observed
    return stalled


@pytest.mark.parametrize("which", [0, 1], ids=["models", "flux"])
def test_wait_stops_when_flux_is_stalled(
    live: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, which: int
) -> None:
    """Flux retries a Stalled Kustomization only once its spec changes: --wait would
    only ever reach its timeout."""
    namespace, name = _flux_kustomizations(live)[which]
    live.api.set_status("Kustomization", namespace, name, _stalled_status(live, observed=1))

    def never(*args: object) -> None:
        raise AssertionError("--wait followed the cluster: nothing is left to wait for")

    monkeypatch.setattr(status_module.Follower, "run", never)
    code, env = status_json(live, capsys, "--wait", "--timeout", "300")
    # The -flux one stalled leaves what the models' one applied standing: ready, said.
    expected = (1, True, False) if which == 0 else (0, True, True)
    assert (code, env["stalled"], env["ready"]) == expected
    assert f"; {name} Stalled (InvalidCELExpression: bad)" in env["message"]


def test_a_stalled_condition_older_than_the_spec_is_not_final(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, name = _kustomization(live)
    live.api.set_status("Kustomization", namespace, name, _stalled_status(live, observed=0))
    code, env = status_json(live, capsys, "--wait", "--timeout", "1")
    assert (code, env["stalled"]) == (1, False)
    assert "Stalled" not in env["message"]


def test_nothing_published_yet(
    tmp_path: Path,
    api: FakeKubeAPI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "fresh"
    shutil.copytree(EXAMPLES, work)
    sh(work, "init", "-q")
    commit_all(work, "specs")
    monkeypatch.setenv("KUBECONFIG", str(api.write_kubeconfig(tmp_path / "kubeconfig")))
    code = cli.main(["-C", str(work), "status", "--env", ENV, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 1
    env = json.loads(out)["environments"][0]
    assert env["published_commit"] is None and env["in_sync"] is False
    assert "nothing published yet: no 'deploy' branch" in err


# --------------------------------------------------------------------------- --wait


def _run_in_thread(live: Live, *args: str) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(cli.main(["-C", str(live.work), "status", *args])),
        daemon=True,
    )
    thread.start()
    return thread, codes


def test_wait_follows_watch_events_until_ready(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, name = live.where(KUBEAI_MODEL, "Model")
    live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 0}})
    thread, codes = _run_in_thread(
        live, "--env", ENV, "--format", "json", "--wait", "--timeout", "120"
    )
    plan = environment_plan(live.result.models, live.result.config, ENV)
    live.api.wait_for_watches(len(plan.reads))
    live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 1}})
    thread.join(60)
    assert not thread.is_alive()
    out, err = capsys.readouterr()
    assert codes == [0], err
    assert model(json.loads(out)["environments"][0], KUBEAI_MODEL)["ready"] is True
    # Event-driven: each collection was listed once, then watched from its list's version.
    paths = [p for _, p in live.api.requests if "/namespaces/" in p]
    models_path = f"/apis/kubeai.org/v1/namespaces/{namespace}/models"
    assert len([p for p in paths if p.split("?")[0] == models_path and "watch" not in p]) == 1
    watch = next(p for p in paths if p.startswith(models_path) and "watch=true" in p)
    assert "resourceVersion=" in watch


def test_wait_relists_after_410_gone(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    namespace, name = live.where(KUBEAI_MODEL, "Model")
    live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 0}})
    thread, codes = _run_in_thread(live, "--env", ENV, "--wait", "--timeout", "120")
    plan = environment_plan(live.result.models, live.result.config, ENV)
    live.api.wait_for_watches(len(plan.reads))
    # The change happens in history the server then forgets: only a fresh list shows it.
    live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 1}}, emit=False)
    live.api.compact()
    live.api.end_watches()
    thread.join(60)
    assert not thread.is_alive()
    _, err = capsys.readouterr()
    assert codes == [0], err
    models_path = f"/apis/kubeai.org/v1/namespaces/{namespace}/models"
    lists = [p for _, p in live.api.requests if p.split("?")[0] == models_path and "watch" not in p]
    assert len(lists) == 2


def test_wait_times_out_with_exit_1(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    namespace, name = live.where(KUBEAI_MODEL, "Model")
    live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 0}})
    code, out, _ = status(live, capsys, "--env", ENV, "--wait", "--timeout", "1")
    assert code == 1
    assert f"NOT READY  {KUBEAI_MODEL}" in out


def test_wait_finds_a_kind_installed_during_the_wait(
    live: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first deploy: Flux applies KubeAI's CRD and the Models in the same reconcile.
    monkeypatch.setattr(status_module, "REDISCOVER_SECONDS", 0.05)
    models = live.objects("Model")
    live.api.uninstall("Model")
    thread, codes = _run_in_thread(
        live, "--env", ENV, "--format", "json", "--wait", "--timeout", "120"
    )
    discovery = "/apis/kubeai.org/v1"
    live.api.wait_for_requests(lambda p: p.split("?")[0] == discovery, count=2)
    assert thread.is_alive()  # still waiting: Model is not served yet
    live.api.install("Model")
    for obj in models:
        live.api.apply({**obj, "status": ready_status(obj)})
    thread.join(60)
    assert not thread.is_alive()
    out, err = capsys.readouterr()
    assert codes == [0], err
    env = json.loads(out)["environments"][0]
    kubeai = [m for m in env["models"] if m["runtime"] == "kubeai-text"]
    assert kubeai and all(m["ready"] for m in kubeai)


# --------------------------------------------------------------------------- bad input


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_unreachable_server_is_exit_3_naming_the_context(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    kubeconfig = live.api.write_kubeconfig(tmp_path / "down", context="down", server=url)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert f"servegen: error: cannot reach the API server of context 'down' ({url})" in err
    assert err.count("\n") == 1


def test_expired_token_is_exit_3(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = live.api.write_kubeconfig(tmp_path / "expired", token="expired-token")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert "context 'test'" in err
    assert "rejected the credentials" in err
    assert "(401 Unauthorized: Unauthorized); the token may have expired" in err


def _with_credential_plugin(
    live: Live, tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A kubeconfig (now $KUBECONFIG) whose user gets credentials from `command`."""
    kubeconfig = live.api.write_kubeconfig(tmp_path / "exec")
    config = json.loads(kubeconfig.read_text())
    plugin = {"apiVersion": "client.authentication.k8s.io/v1", "command": command}
    config["users"] = [{"name": "reader", "user": {"exec": plugin}}]
    kubeconfig.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    return kubeconfig


def test_a_credential_plugin_that_is_not_installed_is_named(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client logs a missing exec plugin and goes on without credentials: the 401
    that follows read as an expired token."""
    kubeconfig = _with_credential_plugin(live, tmp_path, "/nonexistent/aws-iam", monkeypatch)
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert err == (
        f"servegen: error: context 'test' of kubeconfig {kubeconfig} gets its credentials "
        "from the program '/nonexistent/aws-iam', which is not installed here (not on PATH)\n"
    )


def test_a_credential_plugin_that_fails_is_one_line(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client logs the plugin's exit status and stderr (ERROR:root lines) and goes
    on without credentials; urllib3 logs its retries."""
    plugin_path = tmp_path / "gke-auth"
    plugin_path.write_text("#!/bin/sh\necho 'F1201 token expired: run gcloud auth login' >&2\n"
                           "echo 'more detail' >&2\nexit 1\n")  # fmt: skip
    plugin_path.chmod(0o755)
    kubeconfig = _with_credential_plugin(live, tmp_path, str(plugin_path), monkeypatch)
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert err == (
        f"servegen: error: context 'test' of kubeconfig {kubeconfig}: getting its credentials "
        "failed: exec: process returned 1. F1201 token expired: run gcloud auth login\n"
    )


def test_forbidden_is_exit_3_and_points_at_the_rbac(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, _ = live.where(VLLM_MODEL, "Deployment")
    live.api.forbidden.add(("deployments", namespace))
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert (
        f"context 'test' ({live.api.url}) forbids listing deployments in namespace "
        f"'{namespace}' (403 Forbidden: deployments.apps is forbidden: User "
    ) in err
    assert "grant the read-only status RBAC" in err


def test_a_context_that_does_not_exist_is_exit_3(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    config = live.work / "servegen.yaml"
    config.write_text(
        config.read_text().replace(
            "    namespace: llm-dev\n", "    namespace: llm-dev\n    context: staging\n"
        )
    )
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert "has no context 'staging' (it has: test)" in err


def test_no_kubeconfig_at_all_is_exit_3(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert "no kubeconfig found" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clusters: [\n", "cannot read kubeconfig"),
        ("[1, 2]", "cannot read kubeconfig"),
        ("{}", "has no current context; name one"),
        # The client's own words were "Expected object with name  in ... contexts list".
        (
            'current-context: ""\ncontexts: [{name: a, context: {cluster: c, user: u}}]\n',
            "has no current context; name one",
        ),
    ],
)
def test_a_broken_kubeconfig_is_exit_3(
    live: Live,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    path = tmp_path / "broken-kubeconfig"
    path.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(path))
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert message in err


def test_in_cluster_without_a_service_account_is_exit_3(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3
    assert "cannot use the in-cluster service account" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timeout", "5"), "--timeout needs --wait"),
        (("--wait", "--timeout", "0"), "--timeout must be a positive number"),
        (("--format", "yaml"), "invalid choice: 'yaml'"),
    ],
)
def test_usage_errors_are_exit_2(
    live: Live, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = status(live, capsys, *args)
    assert code == 2
    assert message in err


def test_an_unknown_environment_is_exit_1_as_for_every_command(
    live: Live, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["status"], ["render"], ["endpoints"], ["diff"]):
        code = cli.main(["-C", str(live.work), *command, "--env", "staging"])
        err = capsys.readouterr().err
        assert code == 1, (command, err)
        assert err == (
            "servegen: error: unknown environment 'staging' (declared in servegen.yaml: "
            "dev, prod)\n"
        ), command


# --------------------------------------------------------------------------- contexts and RBAC


def test_each_environment_reads_its_own_context(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeKubeAPI() as prod_api:
        apply_environment(prod_api, live.result, "prod", live.deploy)
        kubeconfig = live.api.write_kubeconfig(
            tmp_path / "two", extra_contexts={"prod-cluster": prod_api.url}
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        config = live.work / "servegen.yaml"
        config.write_text(
            config.read_text().replace(
                "    namespace: llm-prod\n", "    namespace: llm-prod\n    context: prod-cluster\n"
            )
        )
        code, out, err = status(live, capsys, "--format", "json")
        assert code == 0, out + err
        envs = {e["name"]: e for e in json.loads(out)["environments"]}
        assert (envs["dev"]["context"], envs["prod"]["context"]) == ("test", "prod-cluster")
        assert all(e["in_sync"] and e["ready"] for e in envs.values())
        assert any("/namespaces/llm-prod/" in p for _, p in prod_api.requests)
        assert not any("/namespaces/llm-prod/" in p for _, p in live.api.requests)


def test_rendered_rbac_is_enough_for_status_and_only_reads(
    live: Live, capsys: pytest.CaptureFixture[str], crds_dir: Path, tmp_path: Path
) -> None:
    config = live.work / "servegen.yaml"
    config.write_text(
        config.read_text().replace(
            "    namespace: llm-dev\n",
            "    namespace: llm-dev\n"
            "    status_reader: {kind: ServiceAccount, name: status-reader, namespace: ci}\n",
        )
    )
    result = build(live.work, crds=[crds_dir])
    files = {p: d for p, d in result.files.items() if p.startswith("rbac/")}
    watcher = IncrementalBuild(live.work, out=tmp_path / "watched", crds=[crds_dir])
    assert watcher.initial().ok
    assert watcher.files == result.files  # `servegen watch` writes the same RBAC
    assert files, "no RBAC rendered"
    assert all(p.startswith("rbac/dev/") for p in files)
    plan = environment_plan(result.models, result.config, ENV)
    roles = [o for o in rbac_objects(plan, result.config) if o["kind"] == "Role"]
    for role in roles:
        for rule in role["rules"]:
            assert rule["verbs"] == ["list", "watch"]
    bindings = [o for o in rbac_objects(plan, result.config) if o["kind"] == "RoleBinding"]
    assert {b["subjects"][0]["name"] for b in bindings} == {"status-reader"}
    # What the cluster will accept: strict schemas, and the folder builds with kustomize.
    problems = ManifestChecker("1.33").check(rbac_objects(plan, result.config)).problems
    assert list(problems) == []
    folder = tmp_path / "out"
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    built = kustomize(folder / "rbac" / "dev")
    assert sorted((o["kind"], o["metadata"]["namespace"]) for o in built) == sorted(
        (o["kind"], o["metadata"]["namespace"]) for o in rbac_objects(plan, result.config)
    )
    # Flux applies them with its own objects (the -flux Kustomization, pruning), so a
    # render that reads a new kind or namespace brings its Role along.
    for path, data in result.files.items():
        if path.startswith("flux/dev/"):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
    applied_by_flux = kustomize(folder / "flux" / "dev")
    assert {(o["kind"], o["metadata"]["name"]) for o in built} <= {
        (o["kind"], o["metadata"]["name"]) for o in applied_by_flux
    }
    live.api.allow_roles(roles)
    code, out, err = status(live, capsys, "--env", ENV)
    assert code == 0, out + err
    # Without the Flux rule the same token is refused: the Roles are what grants access.
    live.api.allow_roles([r for r in roles if r["metadata"]["namespace"] != "flux-system"])
    code, _, err = status(live, capsys, "--env", ENV)
    assert code == 3 and "403 Forbidden" in err


# --------------------------------------------------------------------------- watch --status


def _status_events(lines: queue.Queue[str], timeout: float = 60) -> Iterator[dict[str, Any]]:
    while True:
        event = json.loads(lines.get(timeout=timeout))
        if event["type"] == "status":
            yield event


def test_watch_status_shows_live_state_next_to_the_render(live: Live, tmp_path: Path) -> None:
    namespace, name = live.where(KUBEAI_MODEL, "Model")
    live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 0}})
    command = [sys.executable, "-m", "generator", "-C", str(live.work), "watch", "--status"]
    command += ["--format", "json", "--out", str(tmp_path / "watched")]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        stdout = proc.stdout
        threading.Thread(target=pump_lines, args=(stdout, lines), daemon=True).start()
        try:
            events = _status_events(lines)
            first = {e["name"]: e for e in next(events)["environments"]}
            assert model(first[ENV], KUBEAI_MODEL)["message"] == "0/1 replicas ready"
            live.api.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 1}})
            second = {e["name"]: e for e in next(events)["environments"]}
            assert model(second[ENV], KUBEAI_MODEL)["ready"] is True
            assert second[ENV]["ready"] is True
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        stderr = proc.stderr.read()
    assert code == 0, stderr
    assert "Traceback" not in stderr
