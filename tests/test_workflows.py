"""GitHub workflows, the composite action and the pre-commit hook are valid and pinned.

Workflows and action.yml are checked against the GitHub schemas shipped (vendored) with
check-jsonschema; every `uses:` must name a full commit SHA, and every `servegen ...`
command line in a workflow must parse with the real CLI.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from generator import cli
from tests.conftest import REPO_ROOT

WORKFLOWS = sorted(
    [
        *(REPO_ROOT / ".github" / "workflows").glob("*.yml"),
        *(REPO_ROOT / ".github" / "workflows").glob("*.yaml"),
        REPO_ROOT / "generator" / "scaffold" / "workflows" / "servegen.yml",
    ]
)
ACTION = REPO_ROOT / "action.yml"
PRE_COMMIT_HOOKS = REPO_ROOT / ".pre-commit-hooks.yaml"
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def uses_of(data: Any) -> Iterator[str]:
    """Every `uses:` value, wherever it appears (steps, reusable-workflow jobs)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "uses" and isinstance(value, str):
                yield value
            else:
                yield from uses_of(value)
    elif isinstance(data, list):
        for item in data:
            yield from uses_of(item)


def run_scripts(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "run" and isinstance(value, str):
                yield value
            else:
                yield from run_scripts(value)
    elif isinstance(data, list):
        for item in data:
            yield from run_scripts(item)


def servegen_commands(script: str) -> Iterator[list[str]]:
    """`servegen ...` command lines of a shell script, continuations joined."""
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] != ["servegen"]:
            continue
        for stop in (">", "|", "&&", "||", ";", "2>&1"):
            if stop in words:
                words = words[: words.index(stop)]
        yield words[1:]


def test_there_are_workflows_to_check() -> None:
    assert len(WORKFLOWS) >= 2
    assert all(path.is_file() for path in WORKFLOWS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_workflow_matches_the_github_schema(path: Path) -> None:
    result = check_jsonschema("vendor.github-workflows", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_action_matches_the_github_schema() -> None:
    result = check_jsonschema("vendor.github-actions", ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_uses_is_pinned_to_a_commit_sha(path: Path) -> None:
    uses = list(uses_of(load(path)))
    assert uses, f"{path} uses no action"
    unpinned = [u for u in uses if not u.startswith("./") and not PINNED.match(u)]
    assert unpinned == [], f"not pinned to a 40-hex commit SHA: {unpinned}"
    # The version the SHA stands for is named beside it, for people and Dependabot.
    for line in path.read_text().splitlines():
        if re.search(r"\buses:\s*\S+@[0-9a-f]{40}", line):
            assert re.search(r"#\s*v\d", line), f"{path}: no version comment: {line.strip()}"


def test_action_inputs_and_commands() -> None:
    action = load(ACTION)
    inputs = action["inputs"]
    assert set(inputs) >= {"command", "args", "python-version", "requirement"}
    assert inputs["python-version"]["default"] == "3.12"
    assert inputs["requirement"]["default"] == ""
    assert action["runs"]["using"] == "composite"
    text = ACTION.read_text()
    assert "${{ github.action_path }}" in text
    assert "validate|diff|publish)" in text
    # Inputs reach scripts through env only: no ${{ }} inside any `run:`.
    for script in run_scripts(action):
        assert "${{" not in script, script
    for command in ("validate", "diff", "publish"):
        cli.build_parser().parse_args([command])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_servegen_command_lines_parse_with_the_cli(path: Path) -> None:
    parser = cli.build_parser()
    seen = set()
    for script in run_scripts(load(path)):
        for argv in servegen_commands(script):
            parser.parse_args(argv)  # raises UsageError on an unknown flag
            seen.add(argv[0])
    if path.parent.name == "workflows" and path.parent.parent.name == "scaffold":
        assert seen >= {"validate", "diff", "publish"}


def test_pre_commit_hook() -> None:
    hooks = load(PRE_COMMIT_HOOKS)
    assert isinstance(hooks, list)
    (hook,) = (h for h in hooks if h["id"] == "servegen-validate")
    assert hook["language"] == "python"
    assert hook["entry"] == "servegen validate"
    assert hook["pass_filenames"] is False
    assert hook["files"] == r"(^servegen\.yaml$|\.ya?ml$)"
    pattern = re.compile(hook["files"])
    for name in ("servegen.yaml", "specs/a.yaml", "specs/kubeai/b.yml"):
        assert pattern.search(name), name
    for name in ("README.md", "servegen.yaml.bak", "specs/notes.txt"):
        assert not pattern.search(name), name
    cli.build_parser().parse_args(hook["entry"].split()[1:])


def action_step(repo: Path, home: Path) -> tuple[str, dict[str, str]]:
    """The action's command step, and an environment to run it in `repo`, committed."""
    [script] = [s for s in run_scripts(load(ACTION)) if "SERVEGEN_COMMAND" in s]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home)}
    env["XDG_CACHE_HOME"] = str(home / "cache")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True, env=env)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True, env=env)
    return script, env


def test_the_action_stops_workflow_commands_around_diff_output(
    example_repo: Path, tmp_path: Path
) -> None:
    """diff prints spec values as written: a `##[error]` or `::error::` in an arg must not
    reach the runner as a command. The action's own step script is run, with the real
    servegen, in a repository whose change carries such a value."""
    script, env = action_step(example_repo, tmp_path)
    spec = example_repo / "specs" / "vllm" / "qwen-cpu.yaml"
    spec.write_text(spec.read_text() + "# ::error::forged\n")  # and a value below
    text = spec.read_text().replace(
        "serve:\n", 'serve:\n  args: ["--chat-template=##[error]forged"]\n', 1
    )
    spec.write_text(text)
    tokens = []
    for _ in range(2):
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=example_repo,
            env={**env, "SERVEGEN_COMMAND": "diff", "SERVEGEN_ARGS": "--base main"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[0].startswith("::stop-commands::") and "##[error]forged" in done.stdout
        token = lines[0].removeprefix("::stop-commands::")
        assert len(token) == 32 and lines[-1] == f"::{token}::"
        tokens.append(token)
    assert tokens[0] != tokens[1]  # unguessable: a new token every run


def test_the_action_passes_every_line_of_args_and_imports_nothing_from_the_repository(
    example_repo: Path, tmp_path: Path
) -> None:
    """`args: |` gives one argument per line: all reach servegen. The workflow-command
    token does not come from Python run in the spec repository, where a committed
    `secrets.py` would be imported first."""
    script, env = action_step(example_repo, tmp_path)
    (example_repo / "secrets.py").write_text("def token_hex(n):\n    return '0' * 2 * n\n")
    report = tmp_path / "diff.md"
    args = f"--base main\n--format markdown\n--output-file {report}\n"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=example_repo,
        env={**env, "SERVEGEN_COMMAND": "diff", "SERVEGEN_ARGS": args},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert report.is_file()  # the third line's option was passed
    token = done.stdout.splitlines()[0].removeprefix("::stop-commands::")
    assert re.fullmatch(r"[0-9a-f]{32}", token) and token != "0" * 32


def test_the_action_installs_only_a_requirement_pinned_to_a_commit(tmp_path: Path) -> None:
    """servegen is not on PyPI: `servegen==1.0` would install whatever took the name."""
    [script] = [s for s in run_scripts(load(ACTION)) if "SERVEGEN_ACTION_PATH" in s]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RUNNER_TEMP": str(tmp_path)}
    for requirement in (
        "servegen==1.0",
        "servegen @ git+https://github.com/o/servegen@main",
        "servegen @ git+https://github.com/o/servegen@" + "0" * 40 + " evil",
    ):
        done = subprocess.run(
            ["bash", "-c", script],
            env={**env, "SERVEGEN_REQUIREMENT": requirement},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 1, requirement
        assert done.stdout.startswith("::error title=servegen not pinned::"), done.stdout


def test_the_action_publishes_on_a_runner_with_no_git_identity(
    example_repo: Path, tmp_path: Path
) -> None:
    """A hosted runner configures no git identity: the bot's is the deploy commit's
    committer, unless the repository's git config names one."""
    script, env = action_step(example_repo, tmp_path)
    env = {**env, "GIT_CONFIG_NOSYSTEM": "1", "SERVEGEN_COMMAND": "publish", "SERVEGEN_ARGS": ""}

    def publish_committer() -> str:
        done = subprocess.run(
            ["bash", "-c", script], cwd=example_repo, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        log = ["git", "log", "-1", "--format=%cn <%ce>", "deploy"]
        return subprocess.run(
            log, cwd=example_repo, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert publish_committer() == "servegen[bot] <servegen-bot@users.noreply.github.com>"
    git_config = ["git", "config", "user.name", "Ada"]
    subprocess.run(git_config, cwd=example_repo, env=env, check=True)
    subprocess.run(
        [*git_config[:2], "user.email", "ada@example.com"], cwd=example_repo, env=env, check=True
    )
    spec = example_repo / "specs" / "vllm" / "qwen-cpu.yaml"
    spec.write_text(spec.read_text().replace("serve:\n", "serve:\n  replicas: 2\n", 1))
    subprocess.run(["git", "commit", "-qam", "two"], cwd=example_repo, env=env, check=True)
    assert publish_committer() == "Ada <ada@example.com>"
