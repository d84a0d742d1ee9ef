"""`servegen promote`: real git repositories with a deploy branch published by servegen."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from generator import cli
from generator.pipeline import build
from generator.promote import PromoteError, PromoteRequest, apply, plan
from generator.validate import validate_repository
from generator.versions import version_of
from tests.cluster import apply_environment
from tests.gitutil import sh
from tests.kubeapi import FakeKubeAPI
from tests.specrepo import commit_all, edit, make_spec_repo, publish

QWEN = "specs/vllm/qwen-chat.yaml"
CANDIDATE = "hf://Qwen/Qwen2.5-1.5B-Instruct@d4e5f6"
DEV_OVERRIDE = f"environments:\n  dev:\n    spec:\n      url: {CANDIDATE}  # candidate\n"


pytestmark = pytest.mark.usefixtures("isolated_git")


def promote(work: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["-C", str(work), "promote", *args])
    out, err = capsys.readouterr()
    return code, out, err


def versions(work: Path, name: str) -> dict[str, str]:
    (spec,) = [s for s in validate_repository(work).specs if s.name == name]
    return {env: str(version_of(doc)) for env, doc in spec.environments.items()}


@pytest.fixture
def staged(tmp_path: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The examples, published; then dev tries a new Qwen revision, published too."""
    work = make_spec_repo(tmp_path)
    edit(work / QWEN, "environments:\n", DEV_OVERRIDE)
    commit_all(work, "dev: try Qwen d4e5f6")
    code, _, err = publish(work, crds_dir, capsys)
    assert code == 0, err
    return work


def test_promote_copies_the_published_version_and_changes_only_that(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (staged / QWEN).read_text()
    code, out, err = promote(staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod")
    assert code == 0, err
    assert f"--- a/{QWEN}" in out
    after = (staged / QWEN).read_text()
    # The file differs only by the new prod override: every old byte is still in place.
    inserted = "    spec:\n      url: hf://Qwen/Qwen2.5-1.5B-Instruct@d4e5f6\n"
    assert after == before + inserted
    assert out == (
        "--- a/specs/vllm/qwen-chat.yaml\n"
        "+++ b/specs/vllm/qwen-chat.yaml\n"
        "@@ -24,3 +24,5 @@\n"
        "     serve:\n"
        "       replicas: 2\n"
        "       scaling: {min_replicas: 2, max_replicas: 8, metric: requests_waiting, target: 5}\n"
        "+    spec:\n"
        "+      url: hf://Qwen/Qwen2.5-1.5B-Instruct@d4e5f6\n"
        "servegen: prod: Qwen/Qwen2.5-1.5B-Instruct main -> d4e5f6 (qwen-chat)\n"
        "servegen: promoted 1 model(s) from dev to prod\n"
    )
    now = versions(staged, "qwen-chat")
    assert (
        now["prod"]
        == now["dev"]
        == (
            "Qwen/Qwen2.5-1.5B-Instruct d4e5f6 image vllm/vllm-openai:v0.33.0 "
            "adapters qwen-sql=hf://example-org/qwen2.5-sql-lora"
        )
    )
    # Nothing was committed without --commit.
    assert sh(staged, "status", "--porcelain") == f"M {QWEN}"


def test_dry_run_prints_the_diff_and_writes_nothing(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (staged / QWEN).read_bytes()
    code, out, err = promote(
        staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod", "--dry-run"
    )
    assert code == 0, err
    assert "+      url: hf://Qwen/Qwen2.5-1.5B-Instruct@d4e5f6\n" in out
    assert out.endswith("servegen: dry run: nothing written\n")
    assert (staged / QWEN).read_bytes() == before


def test_commit_holds_only_the_promoted_file_with_a_clear_message(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (staged / "notes.txt").write_text("unrelated, staged\n")
    sh(staged, "add", "notes.txt")
    head = sh(staged, "rev-parse", "HEAD")
    code, out, err = promote(staged, capsys, "--all", "--from", "dev", "--to", "prod", "--commit")
    assert code == 0, err
    assert sh(staged, "rev-parse", "HEAD~1") == head
    assert sh(staged, "log", "-1", "--format=%B") == (
        "Promote qwen-chat from dev to prod\n\n"
        "prod: Qwen/Qwen2.5-1.5B-Instruct main -> d4e5f6 (qwen-chat)"
    )
    assert sh(staged, "show", "--name-only", "--format=", "HEAD") == QWEN
    # The unrelated staged file stays staged and out of the commit.
    assert sh(staged, "status", "--porcelain") == "A  notes.txt"
    assert "already runs dev's version in prod" in out  # the other models


def test_refused_when_the_source_version_is_not_published(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(staged / QWEN, CANDIDATE, "hf://Qwen/Qwen2.5-1.5B-Instruct@ffffff")
    before = (staged / QWEN).read_bytes()
    code, out, err = promote(staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod")
    assert code == 1
    assert out == ""
    assert err == (
        "servegen: error: specs/vllm/qwen-chat.yaml: qwen-chat in dev is not what is published for "
        "dev: the deploy branch 'deploy' has Qwen/Qwen2.5-1.5B-Instruct d4e5f6 image "
        "vllm/vllm-openai:v0.33.0 adapters qwen-sql=hf://example-org/qwen2.5-sql-lora, the spec "
        "says Qwen/Qwen2.5-1.5B-Instruct ffffff image vllm/vllm-openai:v0.33.0 adapters "
        "qwen-sql=hf://example-org/qwen2.5-sql-lora; "
        "publish dev first, then promote what it runs\n"
    )
    assert (staged / QWEN).read_bytes() == before


def test_refused_without_a_deploy_branch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = make_spec_repo(tmp_path)
    code, out, err = promote(work, capsys, "qwen-chat", "--from", "dev", "--to", "prod")
    assert (code, out) == (
        0,
        "servegen: qwen-chat already runs dev's version in prod\nservegen: nothing to promote\n",
    ), err
    edit(work / QWEN, "environments:\n", DEV_OVERRIDE)
    code, _, err = promote(work, capsys, "qwen-chat", "--from", "dev", "--to", "prod")
    assert code == 1
    assert err == (
        "servegen: error: nothing is published: there is no deploy branch 'deploy' (nor "
        "origin/deploy); promote copies what dev runs, so publish first\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["qwen-chat", "--from", "dev", "--to", "production"],
            "unknown environment 'production' (declared in servegen.yaml: dev, prod)",
        ),
        (
            ["qwen-chat", "--from", "dev", "--to", "dev"],
            "--from and --to are both 'dev': nothing to promote",
        ),
        (
            ["qwn-chat", "--from", "dev", "--to", "prod"],
            "no model named 'qwn-chat' (did you mean 'qwen-chat'?)",
        ),
    ],
)
def test_refusals_name_the_problem(
    staged: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = promote(staged, capsys, *args)
    assert (code, out, err) == (1, "", f"servegen: error: {message}\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "dev", "--to", "prod"], "promote: name the models to promote, or pass --all"),
        (
            ["qwen-chat", "--all", "--from", "dev", "--to", "prod"],
            "promote: give model names or --all, not both",
        ),
    ],
)
def test_names_or_all_is_a_usage_error(
    staged: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = promote(staged, capsys, *args)
    assert (code, out, err) == (2, "", f"servegen: error: {message}\n")


def test_refused_for_a_model_disabled_in_an_environment(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disabled = [s.name for s in validate_repository(staged).specs if "prod" not in s.environments]
    assert disabled, "the examples have a model disabled in prod"
    code, _, err = promote(staged, capsys, disabled[0], "--from", "dev", "--to", "prod")
    assert code == 1
    assert f"environments.prod.enabled: {disabled[0]} is not enabled in prod\n" in err


def test_the_refusal_points_at_the_enabled_false_that_disables_the_model(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = staged / "specs" / "vllm" / "qwen-cpu.yaml"
    lines = spec.read_text().splitlines()
    row = next(i for i, line in enumerate(lines, 1) if "prod: {enabled: false}" in line)
    col = lines[row - 1].index("false") + 1
    code, out, err = promote(staged, capsys, "qwen-cpu", "--from", "prod", "--to", "dev")
    assert (code, out) == (1, "")
    assert err == (
        f"specs/vllm/qwen-cpu.yaml:{row}:{col}: error: environments.prod.enabled: "
        "qwen-cpu is not enabled in prod\n"
        "servegen: error: nothing promoted: qwen-cpu is not enabled in prod\n"
    )


def test_commit_refused_when_the_spec_file_has_other_changes(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(staged / QWEN, "# vLLM on a GPU", "# vLLM on one GPU")
    before = (staged / QWEN).read_bytes()
    code, _, err = promote(staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod", "--commit")
    assert code == 1
    assert err == (
        f"servegen: error: {QWEN} has uncommitted changes: commit or stash them first, so the "
        "promotion commit holds only the promoted values\n"
    )
    assert (staged / QWEN).read_bytes() == before


def test_commit_refused_during_a_merge_and_nothing_written(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`git commit --only` refuses during a merge: the spec used to be written and
    staged first, and left so behind exit 1."""
    sh(staged, "checkout", "-q", "-b", "side")
    (staged / "notes.txt").write_text("side\n")
    sh(staged, "add", "notes.txt")
    sh(staged, "commit", "-qm", "side")
    sh(staged, "checkout", "-q", "-")
    (staged / "notes.txt").write_text("main\n")
    sh(staged, "add", "notes.txt")
    sh(staged, "commit", "-qm", "main")
    sh(staged, "merge", "-q", "side", check=False)  # conflicts: the merge waits
    before, status = (staged / QWEN).read_bytes(), sh(staged, "status", "--porcelain")
    code, _, err = promote(staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod", "--commit")
    assert code == 1
    assert err == "servegen: error: a merge is in progress: finish or abort it first\n"
    assert (staged / QWEN).read_bytes() == before
    assert sh(staged, "status", "--porcelain") == status


def test_shared_anchor_is_refused_and_nothing_written(
    staged: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prod's url is an alias of the base url: promoting would change the base too."""
    edit(staged / QWEN, "  url: hf://", "  url: &base-url hf://")
    edit(
        staged / QWEN, "  prod:\n    serve:\n", "  prod:\n    spec: {url: *base-url}\n    serve:\n"
    )
    commit_all(staged, "prod pins the base url through an alias")
    code, _, err = publish(staged, crds_dir, capsys)
    assert code == 0, err
    before = (staged / QWEN).read_bytes()
    code, out, err = promote(staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod")
    assert (code, out) == (1, "")
    assert err == (
        "servegen: error: specs/vllm/qwen-chat.yaml: environments.prod.spec.url is shared "
        "through the YAML anchor &base-url: changing it would change every alias of it too; "
        "edit it by hand\n"
    )
    assert (staged / QWEN).read_bytes() == before


def test_a_save_made_while_promote_runs_is_kept(staged: Path) -> None:
    """The file is written only if it still holds what promote read: an edit saved in
    between (an editor, another promote) used to be overwritten without a word."""
    planned = plan(staged, PromoteRequest("dev", "prod", ("qwen-chat",)))
    saved = (staged / QWEN).read_text().replace("replicas: 2", "replicas: 3")
    (staged / QWEN).write_text(saved)
    with pytest.raises(PromoteError, match=f"{QWEN} changed since promote read it"):
        apply(planned, staged)
    assert (staged / QWEN).read_text() == saved


def test_a_tab_before_a_comment_is_kept_and_does_not_stop_promote(
    staged: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tab before a comment is YAML the loader reads, and ruamel's round-trip reader
    stopped at it: promote reads it as a space, edits the file and keeps the tab."""
    edit(
        staged / QWEN,
        "  url: hf://Qwen/Qwen2.5-1.5B-Instruct@main\n",
        "  url: hf://Qwen/Qwen2.5-1.5B-Instruct@main\t# pinned\n",
    )
    commit_all(staged, "a tab before a comment")
    code, _, err = publish(staged, crds_dir, capsys)
    assert code == 0, err
    before = (staged / QWEN).read_text()
    code, out, err = promote(staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod")
    assert code == 0, err
    assert f"--- a/{QWEN}" in out
    after = (staged / QWEN).read_text()
    assert "  url: hf://Qwen/Qwen2.5-1.5B-Instruct@main\t# pinned\n" in after
    assert after != before
    assert after.startswith(before[: before.index("\t# pinned")])  # edited below it only


def test_serve_fields_are_promoted_on_request(
    staged: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(
        staged / QWEN,
        "      url: " + CANDIDATE + "  # candidate\n",
        "      url: " + CANDIDATE + '  # candidate\n    serve: {args: [--max-model-len, "4096"]}\n',
    )
    commit_all(staged, "dev: shorter context")
    code, _, err = publish(staged, crds_dir, capsys)
    assert code == 0, err
    code, _, err = promote(
        staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod", "--serve", "args"
    )
    assert code == 0, err
    (spec,) = [s for s in validate_repository(staged).specs if s.name == "qwen-chat"]
    assert spec.environments["prod"].serve.args == ["--max-model-len", "4096"]
    assert spec.environments["prod"].serve.replicas == 2  # not asked for: unchanged
    code, _, err = promote(
        staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod", "--serve", "argz"
    )
    assert code == 1
    assert err.startswith(
        "servegen: error: serve has no field 'argz' in vllmserve-text (fields: args,"
    )


def test_a_revision_kept_in_serve_is_part_of_the_version(
    staged: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """KServe's runtime may take the revision from serve.model_revision: it moves too."""
    bert = staged / "specs/kserve/bert-sentiment.yaml"
    sha = "0123456789abcdef0123456789abcdef01234567"
    bert.write_text(
        bert.read_text() + f"environments:\n  dev:\n    serve: {{model_revision: {sha}}}\n"
    )
    commit_all(staged, "dev: bert at a fixed commit")
    code, _, err = publish(staged, crds_dir, capsys)
    assert code == 0, err
    code, out, err = promote(staged, capsys, "bert-sentiment", "--from", "dev", "--to", "prod")
    assert code == 0, err
    assert bert.read_text().endswith(
        f"    serve: {{model_revision: {sha}}}\n  prod:\n    serve:\n      model_revision: {sha}\n"
    )
    assert (
        "servegen: prod: distilbert/distilbert-base-uncased-finetuned-sst-2-english "
        f"(default) -> {sha} (bert-sentiment)\n"
    ) in out


def test_all_needs_only_what_moves_to_be_published(
    staged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model added since the last publish, the same everywhere, does not block --all."""
    (staged / "specs" / "new.yaml").write_text(
        "kind: kubeai-text\nname: fresh\nspec:\n  url: hf://Qwen/Qwen2.5-0.5B-Instruct\n"
    )
    commit_all(staged, "a new model, not published yet")
    code, out, err = promote(staged, capsys, "--all", "--from", "dev", "--to", "prod")
    assert code == 0, err
    assert "servegen: fresh already runs dev's version in prod\n" in out
    assert "servegen: promoted 1 model(s) from dev to prod\n" in out


# --- --require-live: the source as `servegen status` reads it from the cluster ----------

PROMOTE_QWEN = ("qwen-chat", "--from", "dev", "--to", "prod", "--require-live")


@pytest.fixture
def cluster(
    staged: Path, crds_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeKubeAPI]:
    """A stand-in API server where "Flux" applied dev as published and all is ready."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with FakeKubeAPI() as api:
        rendered = build(staged, crds=[crds_dir], keep_objects=True)
        apply_environment(api, rendered, "dev", sh(staged, "rev-parse", "deploy"))
        monkeypatch.setenv("KUBECONFIG", str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        yield api


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rendered_at(staged: Path, crds_dir: Path, model: str, kind: str) -> tuple[str, str]:
    """(namespace, name) of a model's object in dev, as servegen renders it."""
    rendered = next(
        m for m in build(staged, crds=[crds_dir], keep_objects=True).models if m.name == model
    )
    obj = next(o for o in rendered.environments["dev"].objects if o["kind"] == kind)
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


NOT_AVAILABLE = {
    "observedGeneration": 1,
    "replicas": 1,
    "updatedReplicas": 1,
    "readyReplicas": 0,
    "availableReplicas": 0,
}


def test_require_live_promotes_when_the_source_is_live_and_ready(
    staged: Path, cluster: FakeKubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy = sh(staged, "rev-parse", "deploy")
    code, out, err = promote(staged, capsys, *PROMOTE_QWEN)
    assert code == 0, err
    assert f"servegen: dev is live: Flux applied deploy@sha1:{deploy}; ready: qwen-chat\n" in out
    assert "servegen: promoted 1 model(s) from dev to prod\n" in out
    assert versions(staged, "qwen-chat")["prod"] == versions(staged, "qwen-chat")["dev"]
    assert cluster.requests and {method for method, _ in cluster.requests} == {"GET"}


def test_require_live_refuses_a_model_that_is_not_ready_and_writes_nothing(
    staged: Path, crds_dir: Path, cluster: FakeKubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (staged / QWEN).read_bytes()
    # Another model not being ready is no reason to refuse: only what moves is checked.
    namespace, name = rendered_at(staged, crds_dir, "tinyllama-chat", "Model")
    cluster.set_status("Model", namespace, name, {"replicas": {"all": 1, "ready": 0}})
    code, _, err = promote(staged, capsys, *PROMOTE_QWEN, "--dry-run")
    assert code == 0, err
    namespace, name = rendered_at(staged, crds_dir, "qwen-chat", "Deployment")
    cluster.set_status("Deployment", namespace, name, NOT_AVAILABLE)
    code, out, err = promote(staged, capsys, *PROMOTE_QWEN)
    assert (code, out) == (1, "")
    assert err == (
        "servegen: error: dev is not live in context 'test' (as `servegen status --env dev` "
        "reads it); promote once it is:\n"
        "  qwen-chat: not ready: 0/1 replicas available, 0/1 updated available\n"
    )
    assert (staged / QWEN).read_bytes() == before


def test_require_live_refuses_while_flux_has_not_applied_the_latest_publish(
    staged: Path, crds_dir: Path, cluster: FakeKubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    applied = sh(staged, "rev-parse", "deploy")
    # A later publish that changes dev (a label, not qwen-chat's version): Flux is behind.
    edit(staged / QWEN, "labels: {team: assistants}", "labels: {team: chat}")
    commit_all(staged, "Label qwen-chat")
    code, _, err = publish(staged, crds_dir, capsys)
    assert code == 0, err
    published = sh(staged, "rev-parse", "deploy")
    before = (staged / QWEN).read_bytes()
    code, out, err = promote(staged, capsys, *PROMOTE_QWEN)
    assert (code, out) == (1, "")
    assert err.startswith(
        "servegen: error: dev is not live in context 'test' (as `servegen status --env dev` "
        "reads it); promote once it is:\n  not in sync: Kustomization Ready=True ("
    )
    assert err.endswith(f"; applied {applied[:7]}, published {published[:7]}\n")
    assert "qwen-chat" not in err  # the model itself is ready
    assert (staged / QWEN).read_bytes() == before


def test_require_live_with_an_unreachable_cluster_is_exit_3_and_writes_nothing(
    staged: Path,
    cluster: FakeKubeAPI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    kubeconfig = cluster.write_kubeconfig(tmp_path / "down", context="down", server=url)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    before = (staged / QWEN).read_bytes()
    code, out, err = promote(staged, capsys, *PROMOTE_QWEN)
    assert (code, out) == (3, "")
    assert err.startswith(f"servegen: error: cannot reach the API server of context 'down' ({url})")
    assert err.count("\n") == 1
    assert (staged / QWEN).read_bytes() == before


def test_without_require_live_the_cluster_is_not_read(
    staged: Path, cluster: FakeKubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = promote(staged, capsys, "qwen-chat", "--from", "dev", "--to", "prod")
    assert code == 0, err
    assert "is live" not in out
    assert cluster.requests == []


def test_require_live_refuses_when_nothing_says_what_flux_applied(
    staged: Path, crds_dir: Path, cluster: FakeKubeAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `flux:` status cannot tell published from applied: not proof of live."""
    edit(
        staged / "servegen.yaml",
        "flux:\n  url: https://github.com/example-org/llm-serving\n"
        "  depends_on: [kubeai, kserve]\n",
        "",
    )
    commit_all(staged, "No Flux objects")
    code, _, err = publish(staged, crds_dir, capsys)
    assert code == 0, err
    code, out, err = promote(staged, capsys, *PROMOTE_QWEN)
    assert (code, out) == (1, "")
    assert err.endswith(
        "cannot tell whether dev is live: Flux is not configured (no `flux:` in "
        "servegen.yaml), so nothing says which deploy commit the cluster applied\n"
    )
    assert cluster.requests == []  # refused before asking the cluster anything


def test_another_model_of_the_same_file_keeps_its_versions(
    tmp_path: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Promoting one model of a two-model file was refused: the check expected every
    model of the edited file to move."""
    work = make_spec_repo(tmp_path)
    model = "kind: vllmserve-text\nname: {name}\n"
    model += 'spec: {{url: "hf://Qwen/Qwen2.5-0.5B-Instruct@main"}}\n'
    model += "serve: {{profile: cpu-small, use_cpu_image: true}}\n"
    model += 'environments:\n  dev: {{spec: {{url: "hf://Qwen/Qwen2.5-0.5B-Instruct@{rev}"}}}}\n'
    pair = work / "specs" / "vllm" / "pair.yaml"
    pair.write_text(
        model.format(name="pair-a", rev="aaaa") + "---\n" + model.format(name="pair-b", rev="bbbb")
    )
    commit_all(work, "two models in one file")
    code, _, err = publish(work, crds_dir, capsys)
    assert code == 0, err
    code, _, err = promote(work, capsys, "pair-a", "--from", "dev", "--to", "prod")
    assert code == 0, err
    assert versions(work, "pair-a")["prod"] == versions(work, "pair-a")["dev"]
    assert versions(work, "pair-b")["prod"] != versions(work, "pair-b")["dev"]
    assert "Qwen/Qwen2.5-0.5B-Instruct main" in versions(work, "pair-b")["prod"]
