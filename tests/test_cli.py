"""The command line: exit codes, report formats, init, schema drift, no tracebacks."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from generator import cli, schema, write
from generator.commands import validate as validate_command
from generator.errors import GitError
from generator.pipeline import Build, build
from generator.report import escape_data, escape_property
from tests.conftest import EXAMPLES, REPO_ROOT

BROKEN = """kind: kubeai-text
name: broken
spec:
  url: hf://org/model
  engin: VLLM
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def broken_repo(example_repo: Path) -> Path:
    (example_repo / "specs" / "broken.yaml").write_text(BROKEN)
    return example_repo


def test_validate_examples_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["-C", str(EXAMPLES), "validate"], capsys)
    assert code == 0, out + err
    assert out == "servegen: 10 specs valid, 0 errors in 10 files\n"
    assert err == ""  # every custom resource was checked against a bundled CRD: no notes


# --- which repository: found from where the command runs, as git finds its top --------------


def test_a_subfolder_of_a_repository_works_on_the_repository(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subprocess.run(["git", "init", "-q", str(example_repo)], check=True)
    inside = example_repo / "specs" / "kubeai"
    code, out, err = run(["-C", str(inside), "validate"], capsys)
    assert (code, out) == (0, "servegen: 10 specs valid, 0 errors in 10 files\n"), err
    code, out, err = run(["-C", str(inside), "render"], capsys)
    assert code == 0, err
    assert (example_repo / "output" / "models").is_dir()  # servegen.yaml's output, not specs'
    assert not (inside / "output").exists()
    code, _, err = run(["-C", str(inside), "render", "--out", "here"], capsys)
    assert code == 0, err
    assert (inside / "here" / "models").is_dir()  # an option's path: from where it runs


def test_a_repository_without_a_config_is_found_by_its_git_top(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (example_repo / "servegen.yaml").unlink()
    subprocess.run(["git", "init", "-q", str(example_repo)], check=True)
    code, out, err = run(["-C", str(example_repo / "specs" / "vllm"), "validate"], capsys)
    assert code in (0, 1), err
    assert "spec folder does not exist" not in out + err
    assert "specs/kserve/llama-kserve.yaml:" in out  # the repository's specs/, all of it


def test_a_config_above_the_repository_or_outside_git_is_not_used(
    example_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inner = example_repo / "specs"
    code, out, err = run(["-C", str(inner), "validate"], capsys)  # no git: where it runs
    assert (
        code == 0
        and "0 specs valid" in out
        and "spec folder 'specs' (the default) does not exist" in out + err
    )
    subprocess.run(["git", "init", "-q", str(inner)], check=True)  # a repository of its own
    code, out, _ = run(["-C", str(inner / "kubeai"), "validate"], capsys)
    assert code == 0 and "0 specs valid" in out  # its own top: the servegen.yaml above is not


@pytest.mark.parametrize("entry", ["linked/crds", "missing", "empty"])
def test_a_refused_crd_entry_is_reported_at_its_line_and_never_read(
    entry: str, example_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside" / "crds"
    outside.mkdir(parents=True)
    (outside / "a.yaml").write_text("apiVersion: v1\nkind: NotACRD\n")
    (example_repo / "linked").symlink_to(outside.parent)
    (example_repo / "empty").mkdir()
    config = example_repo / "servegen.yaml"
    text = config.read_text().replace('  kubernetes_version: "1.33"\n', "", 1)
    assert "\nvalidation:\n" in text
    text = text.replace("\nvalidation:\n", f"\nvalidation:\n  crds: [{entry}]\n", 1)
    config.write_text(text)
    line = text[: text.index("  crds: [")].count("\n") + 1
    for command in ("validate", "render"):
        code, out, err = run(["-C", str(example_repo), command], capsys)
        assert code == 1
        assert f"servegen.yaml:{line}:10: error: validation.crds[0]: '{entry}'" in out + err
        assert "NotACRD" not in out + err and "CustomResourceDefinition" not in out + err


def test_render_of_one_environment_counts_its_models(
    example_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = build(example_repo)
    models = [m for m in result.models if "prod" in m.environments]
    objects = sum(len(m.environments["prod"].objects) for m in models)
    assert len(models) < len(result.models)  # one model is not in prod
    for _ in range(2):  # rendered, then taken from the build cache
        code, out, err = run(["-C", str(example_repo), "render", "--env", "prod"], capsys)
        assert code == 0, err
        assert f"rendered {len(models)} models ({objects} objects) into" in out


def test_render_check_says_what_render_would_do_to_each_file(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["-C", str(example_repo), "render"], capsys)
    assert code == 0, err
    model = example_repo / "output/models/nomic-embed/base/model-nomic-embed.yaml"
    model.unlink()
    (example_repo / "specs/kubeai/bge-reranker.yaml").unlink()
    code, out, err = run(["-C", str(example_repo), "render", "--check"], capsys)
    assert code == 1
    lines = err.splitlines()
    assert f"{model}: missing (render adds it)" in lines
    gone = example_repo / "output/models/bge-reranker/base/kustomization.yaml"
    assert f"{gone}: no longer rendered (render removes it)" in lines
    assert f"{example_repo / 'output/README.md'}: stale" in lines
    assert "output files in" in out + err and "are not as rendered" in out + err


@pytest.mark.parametrize("check", [False, True])
def test_render_lets_the_build_go_before_it_reads_the_output_folder(
    example_repo: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    check: bool,
) -> None:
    """The build's model summaries are not held while the output folder is read and
    written (or checked): that reading reuses their memory (at 10,000 specs, a check
    of an output nothing vouches for peaked 14 MiB lower so)."""
    from generator.commands import render as render_command

    made: list[weakref.ref[Build]] = []
    alive: list[bool] = []

    def tracked(*args: object, **kwargs: object) -> Build:
        built = build(*args, **kwargs)  # type: ignore[arg-type]
        made.append(weakref.ref(built))
        return built

    def reading(real: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            alive.append(made[-1]() is not None)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(render_command, "build", tracked)
    monkeypatch.setattr(render_command, "stale_paths", reading(write.stale_paths))
    monkeypatch.setattr(render_command, "write_tree", reading(write.write_tree))
    argv = ["-C", str(example_repo), "render", *(["--check"] if check else [])]
    code, _, err = run(argv, capsys)
    assert code == (1 if check else 0), err  # (nothing rendered yet: the check fails)
    assert alive == [False]


def test_validate_reports_position_and_exits_1(
    broken_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["-C", str(broken_repo), "validate"], capsys)
    assert code == 1
    assert out.splitlines()[0] == (
        "specs/broken.yaml:5:3: error: spec.engin: unknown field 'engin' "
        "(did you mean 'engine'?); allowed: url, model_name, image, adapters, features, engine"
    )
    assert "Traceback" not in out + err


def test_json_format(broken_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["-C", str(broken_repo), "validate", "--format", "json"], capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["diagnostics"][0] == {
        "path": "specs/broken.yaml",
        "line": 5,
        "col": 3,
        "json_path": "spec.engin",
        "message": report["diagnostics"][0]["message"],
        "severity": "error",
    }


def test_github_format_annotations_and_summary(
    example_repo: Path,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for index in range(12):
        (example_repo / "specs" / f"broken-{index:02}.yaml").write_text(
            BROKEN.replace("name: broken", f"name: broken-{index}")
        )
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = run(["-C", str(example_repo), "validate", "--format", "github"], capsys)
    assert code == 1
    annotations = [line for line in out.splitlines() if line.startswith("::error ")]
    assert len(annotations) == 10
    assert annotations[0].startswith(
        "::error file=specs/broken-00.yaml,line=5,col=3,title=spec.engin::unknown field"
    )
    assert "2 more problem(s) are listed in the job summary" in out
    assert summary.read_text().count("specs/broken-") == 12


# A GitHub runner reads `::cmd::` at a line's start and the older `##[cmd]` anywhere in it.
FORGED = "x##[error]forged"


def _no_workflow_command(text: str) -> None:
    assert "##[" not in text
    assert not [line for line in text.splitlines() if line.lstrip().startswith("::")]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_output_line_is_a_workflow_command(
    example_repo: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spec file name and a key holding `##[error]` (the runner's older command form,
    honoured anywhere in a line) are shown, never read by the runner."""
    hostile = example_repo / "specs" / f"{FORGED}.yaml"
    hostile.write_text(BROKEN.replace("engin:", '"k##[add-mask]secret":'))
    code, out, err = run(["-C", str(example_repo), "validate", "--format", fmt], capsys)
    assert code == 1
    _no_workflow_command(out + err)
    if fmt == "json":  # the same data once parsed
        found = json.loads(out)["diagnostics"][0]
        assert found["path"] == f"specs/{FORGED}.yaml"
        assert "'k##[add-mask]secret'" in found["message"]
    else:
        assert out.startswith("specs/x#\\x23[error]forged.yaml:5:3: error: ")


def test_error_message_lines_are_split_on_newlines_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """U+2028 and the other breaks str.splitlines() honours are spelled out, not turned
    into lines; a line of the message starting with `::` is made inert."""
    message = "refused x\u2028::add-mask::s\x85##[error]f\n::warning::g"
    assert cli._report_error(GitError(message), color=False) == 1
    err = capsys.readouterr().err
    assert err == (
        "servegen: error: refused x\\u2028::add-mask::s\\x85#\\x23[error]f\n  \\x3a:warning::g\n"
    )


def test_github_escaping() -> None:
    assert escape_data("a%b\r\nc") == "a%25b%0D%0Ac"
    assert escape_property("x:y,z%") == "x%3Ay%2Cz%25"


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["validate", "--format", "yaml"], capsys)
    assert code == 2
    assert "invalid choice: 'yaml'" in err


def test_missing_directory_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["-C", "/nonexistent-servegen-dir", "validate"], capsys)
    assert code == 2 and "not a directory" in err


def test_internal_error_exits_3_with_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_options: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(validate_command, "run", explode)
    code, _, err = run(["-C", str(EXAMPLES), "validate"], capsys)
    assert code == 3
    assert "internal error (RuntimeError)" in err and "--debug" in err
    assert "Traceback" not in err
    code, _, err = run(["--debug", "-C", str(EXAMPLES), "validate"], capsys)
    assert code == 3 and "Traceback" in err


def test_interrupt_exits_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(_options: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(validate_command, "run", interrupted)
    code, _, _ = run(["-C", str(EXAMPLES), "validate"], capsys)
    assert code == 130


def test_init_scaffold_validates_and_renders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    code, out, _ = run(["init", str(demo)], capsys)
    assert code == 0, out
    assert (demo / ".github" / "workflows" / "servegen.yml").is_file()
    assert (demo / ".gitignore").read_text().strip().endswith("/output/")
    spec_kinds = {
        line.split(":", 1)[1].strip()
        for path in (demo / "specs").glob("*.yaml")
        for line in path.read_text().splitlines()
        if line.startswith("kind:")
    }
    assert spec_kinds == {
        "kubeai-text",
        "vllmserve-text",
        "vllmserve-speech",
        "vllmserve-pooling",
        "huggingfaceserve",
    }
    first_line = (demo / "specs" / "qwen-chat.yaml").read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../schemas/servespec.schema.json"
    code, out, err = run(["-C", str(demo), "validate"], capsys)
    assert code == 0, out + err
    assert err == ""
    code, out, err = run(["-C", str(demo), "render"], capsys)
    assert code == 0, out + err
    assert (demo / "output" / "clusters" / "prod" / "kustomization.yaml").is_file()


def test_init_refuses_non_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("x")
    code, _, err = run(["init", str(tmp_path)], capsys)
    assert code == 1 and "not empty" in err


def test_init_force_keeps_the_users_files_unless_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`init . --force` used to overwrite servegen.yaml, .gitignore and the workflow."""
    mine = {
        "servegen.yaml": "namespace: mine\n",
        ".gitignore": "secrets/\n",
        ".github/workflows/servegen.yml": "name: mine\n",
    }
    for rel, text in mine.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    code, out, _ = run(["init", str(tmp_path), "--force", "--overwrite", ".gitignore"], capsys)
    assert code == 0, out
    assert (tmp_path / "servegen.yaml").read_text() == "namespace: mine\n"
    assert (tmp_path / ".github/workflows/servegen.yml").read_text() == "name: mine\n"
    assert (tmp_path / ".gitignore").read_text().strip().endswith("/output/")
    assert "kept existing servegen.yaml (replace it with --overwrite servegen.yaml)" in out
    assert (tmp_path / "specs").is_dir()
    code, out, _ = run(["init", str(tmp_path), "--force", "--overwrite", ".gitignore"], capsys)
    assert code == 0 and f"servegen: created 1 file in {tmp_path}" in out


def test_init_overwrite_of_an_unknown_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["init", str(tmp_path), "--force", "--overwrite", "README.md"], capsys)
    assert code == 2 and "not a file init writes" in err


def test_init_never_writes_through_a_linked_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside, target = tmp_path / "outside", tmp_path / "repo"
    outside.mkdir()
    target.mkdir()
    (target / "specs").symlink_to(outside)
    code, _, err = run(["init", str(target), "--force"], capsys)
    assert code == 1
    assert f"refusing to write specs/bge-embed.yaml: {target}/specs is a symbolic link" in err
    assert list(outside.iterdir()) == []


def test_schema_never_writes_out_of_the_repository_through_links(
    example_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / schema.SPEC_SCHEMA).write_text("theirs")
    folder = example_repo / "schemas"
    if folder.exists():
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    folder.symlink_to(outside)  # the folder a link: refused
    code, _, err = run(["-C", str(example_repo), "schema"], capsys)
    assert code == 1 and f"{folder} is a symbolic link" in err
    folder.unlink()
    folder.mkdir()
    (folder / schema.SPEC_SCHEMA).symlink_to(outside / schema.SPEC_SCHEMA)  # a file: replaced
    code, _, _ = run(["-C", str(example_repo), "schema"], capsys)
    assert code == 0
    assert not (folder / schema.SPEC_SCHEMA).is_symlink()
    assert (outside / schema.SPEC_SCHEMA).read_text() == "theirs"
    assert schema.stale_files(folder) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["diff", "--output-file", "/missing/x"],
        ["schema", "--out", "/proc/x"],
        ["schema", "--out", "/dev/null"],
    ],
)
def test_unwritable_output_paths_are_usage_errors(
    argv: list[str], example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["-C", str(example_repo), *argv], capsys)
    assert code == 2, err
    assert err.startswith(f"servegen: error: {argv[1]} {argv[2]}: ") and "Traceback" not in err


def test_committed_schemas_are_current() -> None:
    """CI fails when the JSON Schemas drift from the models: run `servegen schema`."""
    assert schema.stale_files(schema.packaged_dir()) == []


def test_schema_check_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(["schema", "--out", str(tmp_path)], capsys)
    assert code == 0
    spec_schema = tmp_path / schema.SPEC_SCHEMA
    spec_schema.write_text(spec_schema.read_text().replace("kubeai-text", "kubeai-txt"))
    code, _, err = run(["schema", "--check", "--out", str(tmp_path)], capsys)
    assert code == 1 and schema.SPEC_SCHEMA in err


def test_every_schema_field_is_described() -> None:
    def walk(node: object, path: str) -> list[str]:
        missing = []
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if isinstance(prop, dict) and "description" not in prop:
                    missing.append(f"{path}.{name}")
            for key, value in node.items():
                missing += walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                missing += walk(value, f"{path}[{index}]")
        return missing

    for document in (schema.spec_schema(), schema.config_schema()):
        assert walk(document, "$") == []


@pytest.mark.parametrize(
    ("schema_file", "documents"),
    [
        (schema.SPEC_SCHEMA, sorted((EXAMPLES / "specs").rglob("*.yaml"))),
        (schema.CONFIG_SCHEMA, [EXAMPLES / "servegen.yaml"]),
    ],
)
def test_examples_match_the_json_schema(schema_file: str, documents: list[Path]) -> None:
    """Editors using the published schemas accept every example (check-jsonschema)."""
    schema_path = REPO_ROOT / "schemas" / schema_file
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema_path)]
        + [str(path) for path in documents],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


NUMBERS_SPEC = """\
kind: vllmserve-speech
name: numbers
spec:
  url: hf://openai/whisper-tiny
serve:
  resources: {cpu: 2, mem: 8Gi, disk: 1000000000}
  envs: {WORKERS: 2, VERBOSE: true, RATIO: 1.5}
"""


def test_values_servegen_accepts_as_numbers_match_the_json_schema(tmp_path: Path) -> None:
    """`cpu: 2` and `envs: {A: 1}` are valid specs: editors must not mark them."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "servegen.yaml").write_bytes((EXAMPLES / "servegen.yaml").read_bytes())
    spec = tmp_path / "specs" / "numbers.yaml"
    spec.write_text(NUMBERS_SPEC)
    schema_file = REPO_ROOT / "schemas" / schema.SPEC_SCHEMA
    assert cli.main(["-C", str(tmp_path), "validate"]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(schema_file), str(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_is_cheap_to_import() -> None:
    """`servegen --help` must not import pydantic, jinja2 or the runtimes."""
    code = (
        "import sys; from generator import cli; cli.build_parser();"
        "heavy = [m for m in ('pydantic', 'jinja2', 'runtimes', 'ruamel') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_a_render_answered_from_the_cache_loads_no_templates(tmp_path: Path) -> None:
    """Jinja is imported where templates are first rendered, not before: a render the
    build cache answers whole needs none."""
    code = (
        "import sys; from generator import cli;"
        f"code = cli.main(['-C', {str(EXAMPLES)!r}, 'render', '--out', {str(tmp_path / 'out')!r}]);"
        "print(code, 'jinja2' in sys.modules)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("SERVEGEN_NO_CACHE", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout.split()[-2:]
        for _ in range(2)
    ]
    assert runs == [["0", "True"], ["0", "False"]]


# The command line's own modules: argv, options, and what is written to the terminal.
CLI_MODULES = {"cli.py", "options.py", "__main__.py", "terminal.py", "report.py"}
CLI_ONLY = ("generator.cli", "generator.options", "generator.commands")


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = node.module or ""
    if module.startswith(CLI_ONLY):
        return [module]
    return [f"{module}.{alias.name}" for alias in node.names]


def _script_lines(tree: ast.Module) -> set[int]:
    """Lines of `if __name__ == "__main__":` blocks: a module's own command line."""
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'":
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _layering_problems(source: str) -> list[str]:
    """Imports of the CLI's modules, print() calls and sys.stdout/stderr in `source`,
    outside a module's `__main__` block."""
    problems = []
    tree = ast.parse(source)
    script = _script_lines(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in script:
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = _imported(node)
            problems += [f"{node.lineno}: imports {n}" for n in names if n.startswith(CLI_ONLY)]
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
        ):
            problems.append(f"{node.lineno}: print()")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("stdout", "stderr")
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ):
            problems.append(f"{node.lineno}: sys.{node.attr}")
    return sorted(problems)


def test_the_layering_scan_finds_what_it_looks_for() -> None:
    source = (
        "import sys\nfrom generator import options\nfrom generator.cli import main\n"
        "print('x', file=sys.stderr)\n"
        "if __name__ == '__main__':\n    print('a script may print')\n"
    )
    assert _layering_problems(source) == [
        "2: imports generator.options",
        "3: imports generator.cli",
        "4: print()",
        "4: sys.stderr",
    ]


def test_only_the_command_line_knows_argv_and_the_terminal() -> None:
    """Core modules take plain parameters or core settings and report through a Reporter."""
    found = {
        path.name: problems
        for path in sorted((REPO_ROOT / "generator").glob("*.py"))
        if path.name not in CLI_MODULES
        for problems in [_layering_problems(path.read_text(encoding="utf-8"))]
        if problems
    }
    assert found == {}


def test_missing_spec_folder_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "servegen.yaml").write_text("output: out\nspecs: spec\n")
    code, out, _ = run(["-C", str(tmp_path), "validate"], capsys)
    assert code == 0
    missing = "spec folder 'spec' (set by `specs:` in servegen.yaml) does not exist"
    assert out.splitlines()[0] == f"spec: warning: {missing}"
    code, _, err = run(["-C", str(tmp_path), "render"], capsys)
    assert code == 0 and f"note: spec: {missing}" in err
    (tmp_path / "servegen.yaml").unlink()  # no config at all
    code, out, _ = run(["-C", str(tmp_path), "validate"], capsys)
    assert out.splitlines()[0] == "specs: warning: spec folder 'specs' (the default) does not exist"
    (tmp_path / "specs").write_text("")  # not a folder: the reader's error alone
    code, out, _ = run(["-C", str(tmp_path), "validate"], capsys)
    assert code == 1 and "does not exist" not in out


def test_pydantic_plugins_of_the_environment_are_never_run(tmp_path: Path) -> None:
    """A distribution registering a pydantic plugin (entry point group `pydantic`) is
    found by a plain pydantic program, but servegen never imports it."""
    site = tmp_path / "site"
    marker = tmp_path / "plugin-ran"
    (site / "sneaky_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "sneaky_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: sneaky-plugin\nVersion: 1.0\n"
    )
    (site / "sneaky_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[pydantic]\nsneaky = sneaky_plugin:plugin\n"
    )
    (site / "sneaky_plugin.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "class plugin:\n"
        "    @staticmethod\n"
        "    def new_schema_validator(*args, **kwargs):\n"
        "        return None, None, None\n"
    )
    env = {"PYTHONPATH": f"{site}:{REPO_ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    plain = "import pydantic\nclass M(pydantic.BaseModel):\n    x: int\n"
    subprocess.run([sys.executable, "-c", plain], env=env, check=True, capture_output=True)
    assert marker.read_text() == "ran"  # the plugin is real: plain pydantic loads it
    marker.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "generator", "-C", str(EXAMPLES), "validate"],
        env={**env, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not marker.exists()


def test_python_m_inside_a_spec_repository_imports_nothing_from_it(tmp_path: Path) -> None:
    """`python -m` puts the working folder first on sys.path: the `schemas/` folder
    `servegen init` writes (or a committed `schemas/__init__.py`) must not stand in for
    servegen's own package."""
    repo = tmp_path / "models"
    assert cli.main(["init", str(repo)]) == 0
    (repo / "schemas" / "__init__.py").write_text('raise SystemExit("ran from the repository")\n')
    done = subprocess.run(
        [sys.executable, "-m", "generator", "validate"],
        cwd=repo,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("servegen: 5 specs valid, 0 errors in 5 files")


_EXITING = """
import atexit, pathlib, sys, tempfile, threading, time
from generator.cli import exit_now
marks = pathlib.Path(sys.argv[1])
kept = tempfile.TemporaryDirectory(dir=marks)  # left to its finalizer, as at any exit
(marks / "folder").write_text(kept.name)
atexit.register(lambda: (marks / "atexit").write_text("ran"))
if "thread" in sys.argv:
    def late() -> None:
        time.sleep(0.3)
        (marks / "thread").write_text("done")
    threading.Thread(target=late).start()
for number in range(5 if "short" in sys.argv else 50_000):  # 5 lines: still buffered
    print(f"line {number}")
exit_now(3)
"""


def _exiting(tmp_path: Path, *args: str, stdout: int = subprocess.PIPE) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _EXITING, str(tmp_path), *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        # Output buffered, as it is by default when it is not a terminal.
        env={**_buffered(os.environ), "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    return done.returncode, (done.stdout or "") + done.stderr


def _buffered(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "PYTHONUNBUFFERED"}


def test_the_quick_exit_still_flushes_the_output_and_runs_the_atexit_handlers(
    tmp_path: Path,
) -> None:
    code, output = _exiting(tmp_path)
    assert code == 3
    assert output.splitlines() == [f"line {number}" for number in range(50_000)]
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not Path((tmp_path / "folder").read_text()).exists()  # its finalizer ran


def test_the_quick_exit_waits_for_a_running_thread(tmp_path: Path) -> None:
    code, _ = _exiting(tmp_path, "thread")
    assert code == 3
    assert (tmp_path / "thread").read_text() == "done"


def test_output_that_cannot_be_flushed_takes_pythons_own_exit(tmp_path: Path) -> None:
    with Path("/dev/full").open("w") as full:  # every write: "no space left"
        code, output = _exiting(tmp_path, "short", stdout=full.fileno())
    assert code == 120  # what Python's exit does when stdout cannot be flushed
    assert "No space left on device" in output
