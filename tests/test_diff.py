"""`servegen diff`: rendered-object diffs between a base revision and the working state."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from generator import buildcache, cli, git, pipeline
from generator import diff as d
from generator.pipeline import build
from generator.versions import ModelVersion
from tests.cacheutil import entries as cache_entries
from tests.cacheutil import head as cache_head
from tests.conftest import EXAMPLES
from tests.gitutil import sh
from tests.specrepo import TINYLLAMA, commit_all, edit, make_spec_repo, publish

pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def spec_repo(tmp_path: Path) -> Path:
    return make_spec_repo(tmp_path)


def dev_object_count() -> int:
    """Objects the examples render in dev, Flux objects included."""
    result = build(EXAMPLES)
    models = sum(
        len(m.environments["dev"].objects) for m in result.models if "dev" in m.environments
    )
    return models + 3  # GitRepository and the two Flux Kustomizations


def diff(work: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["-C", str(work), "diff", *args])
    out, err = capsys.readouterr()
    return code, out, err


def scale_tinyllama(work: Path) -> None:
    edit(work / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")


def test_text_diff_of_a_known_change(spec_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scale_tinyllama(spec_repo)
    code, out, err = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0, err
    head = sh(spec_repo, "rev-parse", "--short=7", "HEAD")
    assert out.startswith(f"servegen diff {head} -> working tree\nnote: base: HEAD\n")
    assert "dev: 0 added, 1 changed, 0 removed\nprod: 0 added, 0 changed, 0 removed\n" in out
    assert "== dev: changed Model kubeai/tinyllama-chat (model tinyllama-chat)\n" in out
    assert "--- a/dev/Model/kubeai/tinyllama-chat\n+++ b/dev/Model/kubeai/tinyllama-chat\n" in out
    assert "\n-  maxReplicas: 2\n+  maxReplicas: 3\n" in out


def test_a_label_added_is_one_line(spec_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Metadata is shown in one order: a spec's first label does not move `namespace`."""
    spec = spec_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    assert "labels:" not in spec.read_text()
    edit(spec, "name: nomic-embed\n", "name: nomic-embed\nlabels: {team: nlp}\n")
    code, out, err = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0, err
    changed = [line for line in out.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"]
    assert changed == ["+    team: nlp", "+    team: nlp"]  # in dev and in prod


def test_no_change_is_reported_and_exits_0(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0
    assert out.endswith("no changes to rendered objects\n")


def test_markdown_diff_of_a_known_change(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale_tinyllama(spec_repo)
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD", "--format", "markdown")
    assert code == 0
    table = (
        "| environment | added | changed | removed |\n|---|---:|---:|---:|\n"
        "| `dev` | 0 | 1 | 0 |\n| `prod` | 0 | 0 | 0 |\n"
    )
    assert table in out
    assert out.index(table) < out.index("<details>")
    assert (
        "<details><summary><code>dev</code>: changed Model kubeai/tinyllama-chat "
        "(model tinyllama-chat)</summary>\n\n```diff\n"
    ) in out
    assert "+  maxReplicas: 3\n" in out and "\n```\n\n</details>\n" in out
    assert "Truncated" not in out


def test_json_diff_of_a_known_change(spec_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scale_tinyllama(spec_repo)
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["base"] == sh(spec_repo, "rev-parse", "HEAD")
    assert data["head"] == "working tree"
    assert data["summary"]["dev"] == {"added": 0, "changed": 1, "removed": 0}
    (change,) = data["changes"]
    assert {k: v for k, v in change.items() if k != "diff"} == {
        "environment": "dev",
        "action": "changed",
        "model": "tinyllama-chat",
        "apiVersion": "kubeai.org/v1",
        "kind": "Model",
        "namespace": "kubeai",
        "name": "tinyllama-chat",
    }
    assert "+  maxReplicas: 3\n" in change["diff"]


def test_markdown_is_capped_and_the_output_file_is_complete(
    spec_repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A new label on every dev object: one changed block per object.
    edit(
        spec_repo / "servegen.yaml",
        "labels: {environment: dev}",
        "labels: {environment: dev, x: y}",
    )
    full_file = tmp_path / "full.md"
    args = ["--base", "HEAD", "--format", "markdown", "--max-chars", "4000"]
    code, out, _ = diff(spec_repo, capsys, *args, "--output-file", str(full_file))
    assert code == 0
    assert len(out) <= 4000
    count = dev_object_count() - 3  # Flux objects carry no environment labels
    assert f"| `dev` | 0 | {count} | 0 |" in out
    assert "**Truncated:**" in out and f"of {count} object diff(s) not shown" in out
    assert out.count("<details>") == out.count("</details>") >= 1
    assert out.count("```diff") == out.count("<details>")
    full = full_file.read_text()
    assert full.count("<details>") == count
    assert "Truncated" not in full
    assert full.startswith(out.split("<details>")[0])


def test_default_base_is_the_merge_base_with_the_default_branch(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sh(spec_repo, "checkout", "-q", "-b", "feature")
    scale_tinyllama(spec_repo)
    commit_all(spec_repo, "Scale on a branch")
    code, out, _ = diff(spec_repo, capsys, "--committed")
    assert code == 0
    base = sh(spec_repo, "rev-parse", "--short=7", "origin/main")
    assert out.startswith(f"servegen diff {base} -> ")
    assert "note: base: merge base of HEAD and origin/main" in out
    assert "dev: 0 added, 1 changed, 0 removed" in out


def test_committed_ignores_the_working_tree(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale_tinyllama(spec_repo)
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD", "--committed")
    assert code == 0 and "no changes to rendered objects" in out


def test_default_base_falls_back_to_the_deployed_source(
    tmp_path: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "trunk-repo"
    sh(tmp_path, "init", "-q", "-b", "trunk", str(work))
    shutil.copytree(EXAMPLES, work, dirs_exist_ok=True)
    deployed = commit_all(work, "Initial")
    assert publish(work, crds_dir, capsys)[0] == 0
    scale_tinyllama(work)
    commit_all(work, "Scale")
    code, out, _ = diff(work, capsys, "--committed")
    assert code == 0
    assert out.startswith(f"servegen diff {deployed[:7]} -> ")
    assert "note: base: source commit deployed on deploy" in out
    assert "dev: 0 added, 1 changed, 0 removed" in out


def test_base_that_predates_servegen_is_empty_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "young-repo"
    sh(tmp_path, "init", "-q", str(work))
    (work / "README.md").write_text("before servegen\n")
    first = commit_all(work, "Start")
    shutil.copytree(EXAMPLES, work, dirs_exist_ok=True)
    commit_all(work, "Adopt servegen")
    code, out, _ = diff(work, capsys, "--base", "HEAD~1", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["base"] == first
    assert any("has no servegen.yaml" in n and "treated as empty" in n for n in data["notes"])
    assert data["summary"]["dev"]["added"] > 10
    assert {c["action"] for c in data["changes"]} == {"added"}


def test_base_that_fails_to_build_is_empty_with_a_note(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (spec_repo / "specs" / "broken.yaml").write_text("kind: nope\nname: broken\n")
    commit_all(spec_repo, "Broken")
    sh(spec_repo, "rm", "-q", "specs/broken.yaml")
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0
    assert "does not build" in out and "treated as empty" in out
    assert f"dev: {dev_object_count()} added, 0 changed, 0 removed" in out


def test_a_repository_without_commits_shows_everything_as_added(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sh(example_repo, "init", "-q")
    code, out, err = diff(example_repo, capsys)
    assert code == 0, err
    assert "note: base: the repository has no commit yet" in out + err
    assert "(new)" in out
    code, out, err = diff(example_repo, capsys, "--committed")
    assert (code, out) == (1, "")
    assert err == "servegen: error: the repository has no commit yet: commit the specs first\n"


def test_broken_working_state_exits_1_with_positions(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (spec_repo / "specs" / "broken.yaml").write_text("kind: nope\nname: broken\n")
    code, out, err = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 1
    assert "specs/broken.yaml:1:" in err and "Traceback" not in out + err


def test_environment_filter(spec_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scale_tinyllama(spec_repo)
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD", "--env", "prod")
    assert code == 0
    assert "prod: 0 added, 0 changed, 0 removed" in out and "dev:" not in out


def test_secrets_are_never_shown_and_noise_is_stripped() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "djE="},
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "c",
            "namespace": "n",
            "uid": "123",
            "resourceVersion": "9",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "data": {"a": "b"},
    }
    keyed = dict(d.keyed_objects("m", [secret, config]))
    assert list(keyed) == [("n", "", "ConfigMap", "c")]
    assert keyed[("n", "", "ConfigMap", "c")].obj["metadata"] == {"name": "c", "namespace": "n"}
    changes = d.diff_objects({}, {"dev": keyed})
    assert [c.title for c in changes] == ["added ConfigMap n/c (model m)"]
    assert changes[0].diff.startswith("--- /dev/null\n+++ b/dev/ConfigMap/n/c\n")


def test_markdown_fence_outgrows_backticks_in_the_diff() -> None:
    assert d._fence("a ``` b") == "````"
    assert d._fence("plain") == "```"


def test_version_changes_are_listed_first_per_environment(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A promotion PR reads at a glance: which environment moves to which revision."""
    qwen = spec_repo / "specs/vllm/qwen-chat.yaml"
    edit(
        qwen,
        "  prod:\n    serve:\n",
        '  prod:\n    spec: {url: "hf://Qwen/Qwen2.5-1.5B-Instruct@d4e5f6"}\n    serve:\n',
    )
    code, out, err = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0, err
    head = out.split("\ndev: ")[0]
    assert head.endswith(
        "model versions:\n  prod: Qwen/Qwen2.5-1.5B-Instruct main -> d4e5f6 (qwen-chat)"
    )
    code, out, err = diff(spec_repo, capsys, "--base", "HEAD", "--format", "markdown")
    assert (
        "- **<code>prod: Qwen/Qwen2.5-1.5B-Instruct main -&gt; d4e5f6 (qwen-chat)</code>**" in out
    )
    assert out.index("**Model versions**") < out.index("| environment | added |")
    # A blank line ends the list: a table right after an item is part of that item.
    assert "(qwen-chat)</code>**\n\n| environment | added |" in out
    code, out, err = diff(spec_repo, capsys, "--base", "HEAD", "--format", "json")
    (version,) = json.loads(out)["versions"]
    assert version["environment"] == "prod"
    assert version["old"]["revision"] == "main"
    assert version["new"] == {
        "model": "Qwen/Qwen2.5-1.5B-Instruct",
        "revision": "d4e5f6",
        "image": "vllm/vllm-openai:v0.33.0",
        "adapters": ["qwen-sql=hf://example-org/qwen2.5-sql-lora"],
    }


def test_no_version_section_without_version_changes(
    spec_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale_tinyllama(spec_repo)
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0 and "model versions:" not in out


def test_markdown_head_fits_the_cap_and_escapes_its_notes() -> None:
    """A thousand version lines alone were cut mid-line with no table; a note quoting a
    file name passed its HTML through."""
    new = ModelVersion("Qwen/Qwen2.5-0.5B-Instruct", "main")
    versions = tuple(d.VersionChange("dev", f"m{n:04d}", None, new) for n in range(2000))
    result = d.DiffResult(
        base="a" * 40,
        head="b" * 40,
        environments=("dev",),
        changes=(),
        notes=("base does not build: specs/<details><summary>LGTM.yaml:1:1: error",),
        versions=versions,
    )
    out = d.format_markdown(result, max_chars=20_000)
    assert len(out) <= 20_000
    assert out.endswith("| `dev` | 0 | 0 | 0 |\n\nNo changes to rendered objects.\n\n")
    assert "- ... and " in out and " more\n\n| environment |" in out
    # Inside a code span: shown as written, never read as HTML or Markdown.
    assert "> `base does not build: specs/<details><summary>LGTM.yaml:1:1: error`\n" in out


def test_markdown_head_caps_replacement_lines_too() -> None:
    """Thousands of objects needing a replacement were all listed, and the comment was
    then cut mid-line, with no table and no notice."""
    replacements = tuple(f"Deployment/m{n:05d}-vllm: spec.selector changed" for n in range(5000))
    result = d.DiffResult(
        base="a" * 40, head="b" * 40, environments=("dev",), changes=(), replacements=replacements
    )
    out = d.format_markdown(result, max_chars=20_000)
    assert len(out) <= 20_000
    assert out.endswith("| `dev` | 0 | 0 | 0 |\n\nNo changes to rendered objects.\n\n")
    listed = out.count("> **Needs a replacement:** ")
    assert 0 < listed < 5000
    assert f"> ... and {5000 - listed} more object(s) needing a replacement\n" in out


def test_markdown_notes_and_replacements_bring_no_markdown_alive() -> None:
    """A base that does not build quotes the spec's own key: an @mention, an image or a
    link in it would come alive in a comment the bot posts."""
    key = "@octocat ![t](https://e.example/t.png) [x](https://e.example) **b** `c`"
    result = d.DiffResult(
        base="a" * 40,
        head="b" * 40,
        environments=("dev",),
        changes=(),
        notes=(f"base does not build: unknown field '{key}'",),
        replacements=(f"Model/m: {key}\u2028",),
    )
    out = d.format_markdown(result, max_chars=20_000)
    quoted = "@octocat ![t](https://e.example/t.png) [x](https://e.example) **b** 'c'"
    assert f"> `base does not build: unknown field '{quoted}'`\n" in out
    assert f"> **Needs a replacement:** `Model/m: {quoted}\\u2028`\n" in out


# --------------------------------------------------------------------------- what is rendered

RERANKER = "specs/kubeai/bge-reranker.yaml"
NOMIC = "specs/kubeai/nomic-embed.yaml"


def add_spec(work: Path) -> None:
    text = (work / TINYLLAMA).read_text().replace("name: tinyllama-chat", "name: tinyllama-two")
    (work / "specs" / "kubeai" / "tinyllama-two.yaml").write_text(text)


def rename_file(work: Path) -> None:
    (work / NOMIC).rename(work / "specs" / "kubeai" / "nomic.yaml")


def move_model(work: Path) -> None:
    """The reranker's spec moves into tinyllama's file, as its second document."""
    moved = (work / RERANKER).read_text()
    (work / RERANKER).unlink()
    (work / TINYLLAMA).write_text((work / TINYLLAMA).read_text() + "---\n" + moved)


def add_adapter(work: Path) -> None:
    added = '    - {name: poet, url: "hf://example/tinyllama-poet-lora"}\n'
    edit(work / TINYLLAMA, "  adapters:\n", "  adapters:\n" + added)


# Each edit of the examples, and the spec files a diff against the commit before it
# renders again with every object (None: every spec file, since servegen.yaml changed).
EDITS: dict[str, tuple[Callable[[Path], None], set[str] | None]] = {
    "a value": (scale_tinyllama, {TINYLLAMA}),
    "a comment": (lambda w: edit(w / TINYLLAMA, "# A chat", "# The chat"), {TINYLLAMA}),
    "a spec file added": (add_spec, {"specs/kubeai/tinyllama-two.yaml"}),
    "a spec file removed": (lambda w: (w / RERANKER).unlink(), {RERANKER}),
    "a spec file renamed": (rename_file, {NOMIC, "specs/kubeai/nomic.yaml"}),
    "a model moved into another file": (move_model, {TINYLLAMA, RERANKER}),
    # dev's Model then scales to zero: its Flux health check goes.
    "a Flux health check": (
        lambda w: edit(w / TINYLLAMA, "min_replicas: 1", "min_replicas: 0"),
        {TINYLLAMA},
    ),
    "a model version": (add_adapter, {TINYLLAMA}),
    "servegen.yaml": (lambda w: edit(w / "servegen.yaml", "llm-dev", "llm-dev2"), None),
}


@pytest.mark.parametrize("name", EDITS)
def test_only_what_changed_is_rendered_again_and_the_diff_is_the_whole_one(
    spec_repo: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The builds come from the build cache as summaries; only the spec files that
    differ are rendered again with their objects, and the result is the one of comparing
    every object of both sides."""
    change, expected = EDITS[name]
    change(spec_repo)
    with monkeypatch.context() as whole:

        def every_object_of(
            b: pipeline.Build | None,
            h: pipeline.Build,
            crds: Sequence[Path] = (),
            whole_base: Callable[[], pipeline.Build | None] | None = None,
        ) -> tuple[d.Side, d.Side]:
            base = b if whole_base is None else whole_base()
            return d._whole(base, crds), d._whole(h, crds)

        whole.setattr(d, "changed_sides", every_object_of)
        every_object = d.compare(spec_repo, base="HEAD")
    rendered: set[str] = set()
    whole_builds: list[Path] = []

    def rendered_files(root: Path, rels: Iterable[str], crds: Sequence[Path] = ()) -> object:
        rendered.update(rels)
        return pipeline.rendered_files(root, rels, crds)

    def build(root: Path, **options: Any) -> pipeline.Build:
        if options.get("keep_objects"):
            whole_builds.append(root)
        return pipeline.build(root, **options)

    monkeypatch.setattr(d, "rendered_files", rendered_files)
    monkeypatch.setattr(d, "build", build)
    result = d.compare(spec_repo, base="HEAD")
    assert result == every_object
    # A comment, and a spec moved to another file, change no object.
    moved = ("a comment", "a spec file renamed", "a model moved into another file")
    assert bool(result.changes) is (name not in moved)
    if expected is None:
        assert (rendered, len(whole_builds)) == (set(), 2)
    else:
        assert (rendered, whole_builds) == (expected, [])
    if name == "a Flux health check":
        assert any(c.model == "(flux)" and c.environment == "dev" for c in result.changes)
    if name == "a model version":
        assert [v.model for v in result.versions] == ["tinyllama-chat", "tinyllama-chat"]


def test_a_spec_edited_after_its_build_makes_that_side_whole(spec_repo: Path) -> None:
    """The working tree changed between the build and the rendering of a changed file:
    that side is built again whole from what the files hold now."""
    scale_tinyllama(spec_repo)
    repo = git.open_repo(spec_repo)
    with contextlib.ExitStack() as stack:
        head, _ = d.build_head(repo, spec_repo, True, stack)
        base, _, _ = d.build_base(repo, spec_repo, sh(spec_repo, "rev-parse", "HEAD"), stack)
        edit(spec_repo / TINYLLAMA, "max_replicas: 3\n", "max_replicas: 4\n")
        old, new = d.changed_sides(base, head)
        assert new == d._whole(head, ())
    changes = d.diff_objects(old.objects, new.objects)
    # What the file holds now (4), not what the head's build was made from (3).
    assert any("\n-  maxReplicas: 2\n+  maxReplicas: 4\n" in c.diff for c in changes)


def test_without_the_build_cache_both_sides_are_compared_whole(
    spec_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")

    def rendered_files(*args: object) -> object:
        raise AssertionError("a build without the cache records no inputs to compare")

    monkeypatch.setattr(d, "rendered_files", rendered_files)
    scale_tinyllama(spec_repo)
    code, out, _ = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0
    assert "dev: 0 added, 1 changed, 0 removed\n" in out
    assert "\n-  maxReplicas: 2\n+  maxReplicas: 3\n" in out


def test_a_change_the_cluster_refuses_is_listed_against_the_deploy_branch(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the deploy branch's files that differ from the head's are read (by blob ids):
    the replicated model's are, and its immutable field shows."""
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    edit(spec_repo / TINYLLAMA, "replication: 256", "replication: 128")
    code, out, err = diff(spec_repo, capsys, "--base", "HEAD")
    assert code == 0, err
    refused = [line for line in out.splitlines() if line.startswith("warning: needs a replacement")]
    assert len(refused) == 2, out  # dev and prod
    assert all("Model " in line and "prefixHash.replication" in line for line in refused)
    assert all("(256 -> 128)" in line for line in refused)


# --- the base found from the commit's blobs -------------------------------------------------


def _exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commits written out whole (git.export_tree), from now on."""
    made: list[str] = []
    export_tree = git.export_tree

    def counted(repo: git.Repo, rev: str, *args: Any, **kwargs: Any) -> list[str]:
        made.append(rev)
        return export_tree(repo, rev, *args, **kwargs)

    monkeypatch.setattr(git, "export_tree", counted)
    return made


def _files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_a_stored_base_is_found_from_its_blobs_with_only_the_changed_files_written(
    spec_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scale_tinyllama(spec_repo)
    first = diff(spec_repo, capsys, "--base", "HEAD")
    assert first[0] == 0 and "\n-  maxReplicas: 2\n+  maxReplicas: 3\n" in first[1]
    exports = _exports(monkeypatch)
    roots: list[set[str]] = []
    rendered_files = pipeline.rendered_files

    def seen(root: Path, rels: Iterable[str], crds: Sequence[Path] = ()) -> object:
        roots.append(_files_under(root))
        return rendered_files(root, rels, crds)

    monkeypatch.setattr(d, "rendered_files", seen)
    assert diff(spec_repo, capsys, "--base", "HEAD") == first  # the base's build is stored
    assert exports == []
    base_root = {"servegen.yaml", TINYLLAMA}  # and the working tree, the head's root
    assert roots[0] == base_root and TINYLLAMA in roots[1] and len(roots[1]) > len(base_root)


@pytest.mark.parametrize(
    "why", ["a symlink among the specs", "another build key", "nothing stored", "damaged"]
)
def test_a_base_not_found_from_its_blobs_is_written_out_whole(
    spec_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], why: str
) -> None:
    """The same diff, from the commit written out: a symlink is for the loader to judge,
    another key (servegen.yaml edited) compares both sides whole, a cache without the
    base's build builds it, and a damaged entry is built again from the export."""
    if why == "a symlink among the specs":
        text = (spec_repo / TINYLLAMA).read_text().replace("tinyllama-chat", "tinyllama-linked")
        (spec_repo / "common").mkdir()
        (spec_repo / "common" / "linked.yaml").write_text(text)
        (spec_repo / "specs" / "linked.yaml").symlink_to("../common/linked.yaml")
        commit_all(spec_repo, "a linked spec")
    scale_tinyllama(spec_repo)
    if why == "another build key":
        edit(spec_repo / "servegen.yaml", "llm-dev", "llm-dev2")
    expected = diff(spec_repo, capsys, "--base", "HEAD")
    assert expected[0] == 0, expected[2]
    if why == "nothing stored":
        shutil.rmtree(buildcache.cache_dir())
    if why == "damaged":  # each whole build's paths section: found when first read
        for entry in (path for path in cache_entries() if "notes" in cache_head(path)):
            data = bytearray(entry.read_bytes())
            lengths = [length for length, _ in cache_head(entry)["sections"]]  # type: ignore[attr-defined]
            data[data.index(b"\n") + 1 + lengths[0] + lengths[1] // 2] ^= 0x01
            entry.write_bytes(bytes(data))
    exports = _exports(monkeypatch)
    assert diff(spec_repo, capsys, "--base", "HEAD") == expected
    assert exports == [sh(spec_repo, "rev-parse", "HEAD")]


def test_a_base_in_a_folder_of_the_repository_is_found_from_its_blobs_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """servegen.yaml and the specs below the worktree's top: the commit's listing is the
    folder's, as an export of it would be."""
    work = tmp_path / "work"
    work.mkdir()
    sh(work, "init", "-q", "-b", "main")
    root = work / "platform"
    shutil.copytree(EXAMPLES, root)
    commit_all(work, "specs in a folder")
    scale_tinyllama(root)
    first = diff(root, capsys, "--base", "HEAD")
    assert first[0] == 0 and "\n-  maxReplicas: 2\n+  maxReplicas: 3\n" in first[1], first
    exports = _exports(monkeypatch)
    assert diff(root, capsys, "--base", "HEAD") == first
    assert exports == []
