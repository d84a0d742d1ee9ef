"""Using the CLI as a new user would: help, messages, -C paths, schema, init, version."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from generator import cli, schema
from generator.commands.init import next_steps
from tests.conftest import REPO_ROOT


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_subcommand_and_option_has_a_help_line() -> None:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {c.dest for c in sub._choices_actions} == set(sub.choices)
    assert all(c.help for c in sub._choices_actions)
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, command in [("servegen", parser), *subcommands().items()]
        for action in command._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []
    assert "crds" in sub.choices


@pytest.mark.parametrize(
    "argv",
    [
        ["validate", "--format", "yaml"],
        ["-C", "/nonexistent-servegen-dir", "validate"],
        ["watch", "--push"],
        ["watch", "--publish", "--push"],
        ["publish", "--worktree", "--push"],
        ["render", "--bogus"],
    ],
)
def test_no_doubled_prefix(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert "servegen: servegen" not in out + err
    assert err.count("servegen") >= 1 and err.startswith("servegen: error: ")


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    out = capsys.readouterr().out
    assert out == f"servegen {version('servegen')}\n"
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version("servegen") == declared
    sources = [p for p in (REPO_ROOT / "generator").rglob("*.py")]
    assert not [p for p in sources if f'"{declared}"' in p.read_text()]


def test_no_spec_folder_warning_after_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "servegen.yaml").write_text("specs: models\nnamespace: Bad_NS\n")
    code, out, _ = run(["-C", str(tmp_path), "validate"], capsys)
    assert code == 1
    assert out.splitlines()[0].startswith("servegen.yaml:2:12: error: namespace:")
    assert "spec folder does not exist" not in out
    assert out.splitlines()[-1] == "servegen: 1 error in 1 file"


def test_bad_annotation_key_in_the_config_is_reported_there(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = example_repo / "servegen.yaml"
    text = config.read_text()
    config.write_text(text.replace("servegen.io/owner: platform-team", '"owner team": x'))
    line = next(i for i, t in enumerate(config.read_text().splitlines(), 1) if "owner team" in t)
    code, out, _ = run(["-C", str(example_repo), "render"], capsys)
    assert code == 1
    code, out, _ = run(["-C", str(example_repo), "validate"], capsys)
    assert code == 1
    assert out.startswith(f"servegen.yaml:{line}:")
    assert "annotation key 'owner team'" in out


def test_render_failure_ends_with_the_same_summary_line(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (example_repo / "specs" / "bad.yaml").write_text("kind: kubeai-text\nname: Bad\n")
    code, _, err = run(["-C", str(example_repo), "render"], capsys)
    assert code == 1
    assert err.splitlines()[-1] == "servegen: 2 errors in 1 file"


# --------------------------------------------------------------------------- -C and paths


def test_out_is_relative_to_the_directory_given_with_c(
    tmp_path: Path,
    example_repo: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, _ = run(["-C", str(example_repo), "render", "--out", "rendered"], capsys)
    assert code == 0, out
    assert (example_repo / "rendered" / "clusters" / "prod" / "kustomization.yaml").is_file()
    assert list(elsewhere.iterdir()) == []


def test_readme_quickstart_renders_the_examples_where_they_are_committed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's run command writes `--out ../output` from examples/: the tracked
    output/ at the top, which test_pipeline keeps equal to a fresh render. It is named
    as the reader finds it from where the command ran, not as `examples/../output`."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert "servegen -C examples render --out ../output" in readme
    monkeypatch.chdir(REPO_ROOT)
    code, out, _ = run(["-C", "examples", "render", "--check", "--out", "../output"], capsys)
    assert code == 0, out
    assert out.strip() == "servegen: output is up to date"


def test_schema_writes_into_the_repository_not_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packaged = {
        p.name: hashlib.sha256(p.read_bytes()).digest()
        for p in schema.packaged_dir().glob("*.json")
    }
    repo = tmp_path / "my-models"
    assert run(["init", str(repo)], capsys)[0] == 0
    for path in (repo / "schemas").glob("*.json"):
        path.unlink()
    code, out, _ = run(["-C", str(repo), "schema"], capsys)
    assert code == 0
    assert sorted(p.name for p in (repo / "schemas").iterdir()) == sorted(schema.rendered())
    assert out.strip() == f"servegen: wrote 2 of 2 schema files to {repo / 'schemas'}"
    code, _, _ = run(["-C", str(repo), "schema", "--check"], capsys)
    assert code == 0
    code, _, _ = run(["-C", str(repo), "schema", "--out", "elsewhere"], capsys)
    assert (repo / "elsewhere" / schema.SPEC_SCHEMA).is_file()
    after = {
        p.name: hashlib.sha256(p.read_bytes()).digest()
        for p in schema.packaged_dir().glob("*.json")
    }
    assert after == packaged


# --------------------------------------------------------------------------- init


def test_init_next_steps_cover_git_commit_and_publish(tmp_path: Path) -> None:
    text = next_steps(tmp_path / "my models", pinned=False)
    assert f"cd '{tmp_path / 'my models'}' && git init" in text
    for words in ("git add -A && git commit", "git push -u origin main", "servegen publish"):
        assert words in text
    assert "SERVEGEN_REQUIREMENT" in text
    assert "SERVEGEN_REQUIREMENT" not in next_steps(tmp_path, pinned=True)
    in_git = next_steps(tmp_path, pinned=True, in_git=True)  # init --force in a repository
    assert "git init" not in in_git and f"cd {tmp_path}\n" in in_git


def test_init_next_steps_in_the_current_folder_skip_cd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fresh = next_steps(Path("."), pinned=False).splitlines()
    assert fresh[:2] == ["next:", "  git init -q -b main"]
    assert fresh.index(
        "  # first pin servegen in .github/workflows/servegen.yml: set SERVEGEN_REQUIREMENT to"
    ) < next(i for i, line in enumerate(fresh) if "git remote add" in line)
    in_git = next_steps(tmp_path, pinned=True, in_git=True).splitlines()
    assert in_git[:2] == [
        "next:",
        "  servegen validate && servegen render        # check and render locally",
    ]


def test_scaffold_specs_use_only_profiles_the_scaffold_config_defines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "demo"
    assert run(["init", str(repo)], capsys)[0] == 0
    yaml = YAML(typ="safe")
    defined = set(yaml.load((repo / "servegen.yaml").read_text())["profiles"])
    used = set()
    for path in (repo / "specs").glob("*.yaml"):
        spec = yaml.load(path.read_text())
        for serve in [spec.get("serve", {})] + [
            env.get("serve", {}) for env in spec.get("environments", {}).values()
        ]:
            if "profile" in serve:
                used.add(serve["profile"])
                assert spec["kind"] != "kubeai-text", path
    assert used and used <= defined


def test_readme_init_line_works_with_the_virtualenv_on_path(tmp_path: Path) -> None:
    """The README's `init` line, run by bash, with `. .venv/bin/activate` standing for
    the virtualenv this test runs in."""
    readme = (REPO_ROOT / "README.md").read_text()
    (line,) = [t.strip() for t in readme.splitlines() if "servegen init ../my-models" in t]
    assert line.startswith(". .venv/bin/activate && ")
    command = line.removeprefix(". .venv/bin/activate && ")
    here = tmp_path / "servegen"
    here.mkdir()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        ["bash", "-c", command], cwd=here, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "my-models" / "output" / "clusters" / "prod").is_dir()
    assert "git add -A && git commit" in done.stdout


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["watch", "--publish", "--push"], "it would push uncommitted edits"),
        (["publish", "--worktree", "--push"], "would push uncommitted files"),
    ],
)
def test_pushing_a_working_tree_is_refused(
    argv: list[str], says: str, example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--push publishes merged commits only; a working tree may hold edits none has."""
    code, _, err = run(["-C", str(example_repo), *argv], capsys)
    assert code == 2 and says in err
