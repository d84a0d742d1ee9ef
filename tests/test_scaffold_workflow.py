"""The workflow `servegen init` writes, run: its shell steps, in order, against a bare remote.

GitHub itself cannot run here, so the `uses:` steps are done by hand the way the actions
do them (checkout: a full clone; setup-python: a fresh virtualenv on PATH), and the step
that posts the PR comment through GitHub's API is not run. Every `run:` step is executed
as GitHub executes it (`bash --noprofile --norc -eo pipefail`), with the workflow's, job's
and step's `env:`. The install step really installs servegen with pip from a git
repository pinned at a commit (this checkout's files, committed to a throwaway
repository); its dependencies come from the test environment, so no index is needed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from generator import cli
from generator.commands.init import PLACEHOLDER_REQUIREMENT, requirement_from_direct_url
from tests.conftest import REPO_ROOT
from tests.gitutil import sh

WORKFLOW = Path(".github/workflows/servegen.yml")
GITHUB_API_STEP = "gh pr comment"

# The `${{ }}` expressions of step env values, as GitHub evaluates them per event.
PUSH = {"${{ github.event_name == 'workflow_dispatch' && inputs.allow_prune }}": "false"}
DISPATCH_WITH_PRUNE = {
    "${{ github.event_name == 'workflow_dispatch' && inputs.allow_prune }}": "true"
}


@dataclass(frozen=True)
class Step:
    name: str
    run: str
    env: dict[str, str]


def load_workflow(repo: Path) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load((repo / WORKFLOW).read_text())
    return data


def run_steps(workflow: dict[str, Any], job: str) -> list[Step]:
    """The job's `run:` steps with their merged env, GitHub API steps left out."""
    base = {**workflow.get("env", {}), **workflow["jobs"][job].get("env", {})}
    steps = []
    for step in workflow["jobs"][job]["steps"]:
        if "run" in step and GITHUB_API_STEP not in step["run"]:
            env = {**base, **step.get("env", {})}
            steps.append(Step(step.get("name", step["run"]), step["run"], env))
    return steps


def step(workflow: dict[str, Any], job: str, starts: str) -> Step:
    (found,) = [s for s in run_steps(workflow, job) if s.name.startswith(starts)]
    return found


def execute(
    found: Step,
    cwd: Path,
    ci: Path,
    expressions: dict[str, str] | None = None,
    github: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{ci / 'bin'}{os.pathsep}{env['PATH']}"
    for key, value in found.env.items():
        value = str(value)
        if "${{" in value:
            assert expressions and value in expressions, f"unknown expression {value}"
            value = expressions[value]
        env[key] = value
    env.update(github or {})
    # No package index: servegen's dependencies are already there, servegen comes from git.
    env.update(PIP_NO_INDEX="1", PIP_NO_DEPS="1", PIP_NO_BUILD_ISOLATION="0")
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", found.run],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def servegen_at_commit(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This checkout's files committed to a throwaway repository: `git+file://...@sha`."""
    source = tmp_path_factory.mktemp("servegen-source")
    listed = sh(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in filter(None, listed.split("\0")):
        origin = REPO_ROOT / rel
        if origin.is_file() and not origin.is_symlink():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            (source / rel).write_bytes(origin.read_bytes())
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    sh(source, "init", "-q", "-b", "main")
    sh(source, "add", "-A")
    sh(source, *identity, "commit", "-qm", "servegen")
    return f"servegen @ git+file://localhost{source}@{sh(source, 'rev-parse', 'HEAD')}"


@pytest.fixture(scope="module")
def ci_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ci_venv(tmp_path_factory.mktemp("ci"))


def ci_venv(parent: Path) -> Path:
    """What setup-python leaves: a Python without servegen, on PATH. pip, setuptools and
    servegen's dependencies are linked in from the test environment (every entry but
    servegen's own)."""
    venv = parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    deps = venv.parent / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not re.match(r"(?i)(__editable__[._]servegen|servegen-)", entry.name):
            (deps / entry.name).symlink_to(entry)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "ci-deps.pth").write_text(f"{deps}\n")
    return venv


@pytest.fixture
def spec_repo(tmp_path: Path, isolated_git: None) -> tuple[Path, Path]:
    """`servegen init`, committed and pushed to a bare remote, as the init hint says."""
    repo, remote = tmp_path / "my-models", tmp_path / "remote.git"
    assert cli.main(["init", str(repo)]) == 0
    sh(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    sh(repo, "init", "-q", "-b", "main")
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "Serve specs")
    sh(repo, "remote", "add", "origin", str(remote))
    sh(repo, "push", "-q", "-u", "origin", "main")
    return repo, remote


def checkout(remote: Path, into: Path, branch: str = "main") -> Path:
    """actions/checkout with fetch-depth 0: the full history, origin/* refs."""
    sh(remote.parent, "clone", "-q", "-b", branch, str(remote), str(into))
    return into


def pinned_checkout(
    spec_repo: tuple[Path, Path], requirement: str, into: Path
) -> tuple[Path, dict[str, Any]]:
    """The spec repository pinned to `requirement`, pushed, checked out as CI does."""
    repo, remote = spec_repo
    pin(repo, requirement)
    work = checkout(remote, into)
    return work, load_workflow(work)


def pin(repo: Path, requirement: str) -> None:
    path = repo / WORKFLOW
    path.write_text(path.read_text().replace(PLACEHOLDER_REQUIREMENT, requirement))
    sh(repo, "commit", "-qam", "Pin servegen")
    sh(repo, "push", "-q", "origin", "main")


def test_the_unpinned_workflow_stops_with_a_clear_message(
    spec_repo: tuple[Path, Path], ci_python: Path
) -> None:
    repo, _ = spec_repo
    install = step(load_workflow(repo), "publish", "Install servegen")
    done = execute(install, repo, ci_python)
    assert done.returncode == 1
    assert "::error title=servegen not pinned::set SERVEGEN_REQUIREMENT" in done.stdout
    assert not (ci_python / "bin" / "servegen").exists()


def test_publish_job_installs_the_pinned_servegen_and_never_prunes_on_push(
    spec_repo: tuple[Path, Path], ci_python: Path, servegen_at_commit: str, tmp_path: Path
) -> None:
    work, workflow = pinned_checkout(spec_repo, servegen_at_commit, tmp_path / "ci-publish")
    remote = spec_repo[1]
    assert [s.name for s in run_steps(workflow, "publish")] == [
        "Install servegen (pinned to a commit)",
        "Publish to the deploy branch",
    ]
    install = execute(step(workflow, "publish", "Install"), work, ci_python)
    assert install.returncode == 0, install.stdout + install.stderr
    located = subprocess.run(
        [ci_python / "bin" / "python", "-c", "import generator; print(generator.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert located.stdout.startswith(str(ci_python))  # the installed copy, not this checkout

    publish = step(workflow, "publish", "Publish")
    done = execute(publish, work, ci_python, PUSH)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "published" in done.stdout and "and pushed" in done.stdout
    first = sh(remote, "rev-parse", "refs/heads/deploy")
    assert sh(remote, "log", "-1", "--format=%cn", "deploy") == "servegen[bot]"

    # A push that removes a model: refused, the deploy branch stays where it was.
    sh(work, "rm", "-q", "specs/whisper.yaml")
    sh(work, "commit", "-qm", "Retire whisper")
    sh(work, "push", "-q", "origin", "main")
    done = execute(publish, work, ci_python, PUSH)
    assert done.returncode == 1
    assert "whisper" in done.stderr and "--allow-prune" in done.stderr
    assert sh(remote, "rev-parse", "refs/heads/deploy") == first

    # Run by hand with allow_prune ticked, on the commit main is at: let through.
    at = {"GITHUB_SHA": sh(work, "rev-parse", "HEAD")}
    done = execute(publish, work, ci_python, DISPATCH_WITH_PRUNE, at)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sh(remote, "rev-parse", "refs/heads/deploy") != first


def test_the_install_step_imports_nothing_from_the_checkout(
    spec_repo: tuple[Path, Path], servegen_at_commit: str, tmp_path: Path
) -> None:
    """The step runs in the checkout: a `pip` package committed there must not run in
    place of pip (in the publish job it would hold a token that can push)."""
    repo, remote = spec_repo
    pin(repo, servegen_at_commit)
    forged = repo / "pip"
    forged.mkdir()
    (forged / "__init__.py").write_text("")
    (forged / "__main__.py").write_text("print('FORGED PIP')\nraise SystemExit(0)\n")
    sh(repo, "add", "-A")
    sh(repo, "commit", "-qm", "A pip package beside the specs")
    sh(repo, "push", "-q", "origin", "main")
    work = checkout(remote, tmp_path / "ci-publish")
    venv = ci_venv(tmp_path / "ci")
    done = execute(step(load_workflow(work), "publish", "Install"), work, venv)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FORGED" not in done.stdout + done.stderr
    assert (venv / "bin" / "servegen").exists()


def test_allow_prune_applies_only_to_the_commit_the_run_was_started_on(
    spec_repo: tuple[Path, Path], ci_python: Path, servegen_at_commit: str, tmp_path: Path
) -> None:
    work, workflow = pinned_checkout(spec_repo, servegen_at_commit, tmp_path / "ci-publish")
    remote = spec_repo[1]
    assert execute(step(workflow, "publish", "Install"), work, ci_python).returncode == 0
    publish = step(workflow, "publish", "Publish")
    done = execute(publish, work, ci_python, PUSH)
    assert done.returncode == 0, done.stdout + done.stderr
    first = sh(remote, "rev-parse", "refs/heads/deploy")
    started_on = sh(work, "rev-parse", "HEAD")
    # Dispatched at `started_on`; a merge that removes a model lands before the run starts.
    sh(work, "rm", "-q", "specs/whisper.yaml")
    sh(work, "commit", "-qm", "Retire whisper")
    sh(work, "push", "-q", "origin", "main")
    done = execute(publish, work, ci_python, DISPATCH_WITH_PRUNE, {"GITHUB_SHA": started_on})
    assert done.returncode == 1
    assert "::error title=servegen::main moved since this run was started" in done.stdout
    assert sh(remote, "rev-parse", "refs/heads/deploy") == first


def test_pull_request_job_validates_with_crds_and_diffs(
    spec_repo: tuple[Path, Path], ci_python: Path, servegen_at_commit: str, tmp_path: Path
) -> None:
    repo, remote = spec_repo
    pin(repo, servegen_at_commit)
    sh(repo, "switch", "-q", "-c", "bigger-whisper")
    spec = repo / "specs" / "whisper.yaml"
    spec.write_text(spec.read_text().replace('cpu: "2"', 'cpu: "4"'))
    sh(repo, "commit", "-qam", "More CPU for whisper")
    sh(repo, "push", "-q", "origin", "bigger-whisper")
    work = checkout(remote, tmp_path / "ci-pr", branch="bigger-whisper")
    workflow = load_workflow(work)
    names = [s.name for s in run_steps(workflow, "validate")]
    assert names[0] == "Install servegen (pinned to a commit)"
    pr = {"GITHUB_BASE_REF": "main", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    for found in run_steps(workflow, "validate"):
        done = execute(found, work, ci_python, github=pr)
        assert done.returncode == 0, f"{found.name}: {done.stdout}{done.stderr}"
        if found.name.startswith("Validate"):
            assert "::error" not in done.stdout
            assert done.stderr == ""  # no "no CRD for ..." note: custom resources checked
            assert done.stdout.startswith("servegen: 5 specs valid, 0 errors in 5 files")
    diff = (work / "servegen-diff.md").read_text()
    assert "whisper" in diff and '"4"' in (work / "servegen-diff.full.md").read_text()

    # A broken spec fails the validate step with an annotation at its position.
    spec = work / "specs" / "whisper.yaml"
    spec.write_text(spec.read_text().replace("use_cpu_image", "use_cpu_imag"))
    done = execute(step(workflow, "validate", "Validate"), work, ci_python, github=pr)
    assert done.returncode == 1
    assert done.stdout.startswith("::error file=specs/whisper.yaml,line=")


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        (
            '{"url": "https://github.com/acme/servegen", "vcs_info": '
            '{"vcs": "git", "commit_id": "' + "a" * 40 + '"}}',
            "servegen @ git+https://github.com/acme/servegen@" + "a" * 40,
        ),
        ('{"url": "file:///src/servegen", "dir_info": {"editable": true}}', None),
        (
            '{"url": "file:///src/servegen", "vcs_info": {"vcs": "git", "commit_id": "'
            + "a" * 40
            + '"}}',
            None,
        ),
        ('{"url": "https://x/y", "vcs_info": {"vcs": "git", "commit_id": "main"}}', None),
        ("not json", None),
    ],
)
def test_init_pins_the_workflow_only_to_an_https_git_commit(
    direct_url: str, expected: str | None
) -> None:
    assert requirement_from_direct_url(direct_url) == expected


@pytest.mark.parametrize("job", ["validate", "publish"])
def test_jobs_that_build_keep_the_build_cache_between_runs(job: str, tmp_path: Path) -> None:
    """An actions/cache step, pinned, before servegen runs, saving the folder where
    servegen keeps its cache on a runner (HOME set, XDG_CACHE_HOME not), under a key that
    changes with the pinned servegen and servegen.yaml, falling back to older runs'."""
    from generator.commands.init import scaffold_files

    workflow: dict[str, Any] = YAML(typ="safe").load(scaffold_files()[WORKFLOW.as_posix()])
    steps = workflow["jobs"][job]["steps"]
    # Pull requests restore main's cache and save nothing: what one saved would serve
    # only that pull request and push main's out of the repository's cache space.
    action = "actions/cache/restore" if job == "validate" else "actions/cache"
    (index,) = [i for i, s in enumerate(steps) if s.get("uses", "").startswith(f"{action}@")]
    assert re.fullmatch(rf"{action}@[0-9a-f]{{40}}", steps[index]["uses"])
    assert not any(s.get("uses", "").startswith("actions/cache@") for s in steps[index + 1 :])
    first_servegen = min(i for i, s in enumerate(steps) if "servegen " in s.get("run", ""))
    assert index < first_servegen
    cached = steps[index]["with"]
    home = tmp_path / "runner"
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    where = subprocess.run(
        [sys.executable, "-c", "from generator import buildcache; print(buildcache.cache_dir())"],
        env={**env, "HOME": str(home)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(cached["path"].replace("~", str(home), 1))
    key = cached["key"]
    for part in ("${{ env.SERVEGEN_REQUIREMENT }}", "${{ hashFiles('servegen.yaml') }}"):
        assert part in key
    assert key.endswith("-${{ github.run_id }}")
    restore = cached["restore-keys"].split("\n")
    restore = [line for line in restore if line]
    assert len(restore) == 2 and all(key.startswith(prefix) for prefix in restore)
    assert "hashFiles" in restore[0] and "hashFiles" not in restore[1]


def test_pull_requests_from_forks_get_the_diff_in_the_summary_not_a_comment() -> None:
    """A fork's pull request has a read-only token whatever `permissions:` says: the
    comment would fail the job, so it goes to the job summary instead."""
    scaffolded = REPO_ROOT / "generator" / "scaffold" / "workflows" / "servegen.yml"
    workflow = YAML(typ="safe").load(scaffolded.read_text())
    steps = {s.get("name"): s for s in workflow["jobs"]["validate"]["steps"]}
    same = "github.event.pull_request.head.repo.full_name == github.repository"
    comment = steps["Comment the diff on the pull request"]
    summary = steps["Show the diff in the job summary (pull requests from forks)"]
    assert comment["if"] == same
    # The bot's comment is found by its marker, never "the bot's last comment" (every
    # workflow comments as the same bot).
    assert "<!-- servegen-diff -->" in comment["run"] and "--edit-last" not in comment["run"]
    assert summary["if"] == same.replace("==", "!=")
    assert summary["run"] == 'cat servegen-diff.md >> "$GITHUB_STEP_SUMMARY"'


def test_the_publish_job_publishes_the_branch_as_it_is_when_it_runs() -> None:
    """GitHub may cancel a pending run in favour of an older one: each run checks out the
    branch, not the commit that triggered it, so the last run publishes the newest."""
    scaffolded = REPO_ROOT / "generator" / "scaffold" / "workflows" / "servegen.yml"
    workflow = YAML(typ="safe").load(scaffolded.read_text())
    job = workflow["jobs"]["publish"]
    checkout = next(
        s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout")
    )
    assert checkout["with"] == {"ref": "${{ github.ref }}", "fetch-depth": 0}
    # A run by hand (allow_prune) has its own group: a merge cannot cancel it while it waits.
    assert job["concurrency"] == {
        "group": "servegen-publish-${{ github.event_name }}",
        "cancel-in-progress": False,
    }
