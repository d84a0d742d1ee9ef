"""Validation, judged by a corpus of invalid files that each state the diagnostics they expect.

Every file under tests/corpus/invalid/ is a serve spec; every file under
tests/corpus/invalid-config/ is a servegen.yaml. Each starts with one or more lines

    # expect: <line>:<col> <json.path or -> | <message fragment>

and validation must report exactly those positions and paths (no more, no fewer, no
duplicates), each with a message containing its fragment.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from generator.errors import Diagnostic
from generator.fields import arg_credential_problem
from generator.validate import validate_repository
from runtimes.huggingfaceserve import hf_backend_flags
from runtimes.vllm_engine import release_flags
from tests.conftest import EXAMPLES

CORPUS = Path(__file__).parent / "corpus"
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
INVALID_CONFIG = sorted((CORPUS / "invalid-config").glob("*.yaml"))
CONFIG = CORPUS / "servegen.yaml"

VALID_SPEC = """\
kind: kubeai-text
name: tinyllama-chat
spec:
  url: hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0
"""

_EXPECT = re.compile(r"^# expect: (\d+):(\d+) (.+?) \| (.+)$")


@dataclass(frozen=True)
class Expected:
    line: int
    col: int
    json_path: str
    fragment: str

    @property
    def key(self) -> tuple[int, int, str]:
        return self.line, self.col, self.json_path


def expectations(path: Path) -> list[Expected]:
    """The `# expect:` lines at the top of a corpus file."""
    out = []
    for raw in path.read_bytes().decode("utf-8").splitlines():
        if not raw.startswith("# expect:"):
            break
        match = _EXPECT.match(raw)
        assert match, f"{path.name}: malformed expectation line {raw!r}"
        line, col, json_path, fragment = match.groups()
        out.append(Expected(int(line), int(col), "" if json_path == "-" else json_path, fragment))
    assert out, f"{path.name}: the first line must be '# expect: ...'"
    return out


def assert_diagnostics(
    diagnostics: tuple[Diagnostic, ...], path: str, expected: list[Expected]
) -> None:
    """`diagnostics` are exactly `expected`, all in `path`, each message with its fragment."""
    shown = "\n".join(str(d) for d in diagnostics) or "(none)"
    elsewhere = [d for d in diagnostics if d.path != path]
    assert not elsewhere, f"diagnostics outside {path}:\n{shown}"
    got = Counter((d.line, d.col, d.json_path) for d in diagnostics)
    want = Counter(e.key for e in expected)
    assert got == want, f"expected {sorted(want.elements())}, got:\n{shown}"
    for item in expected:
        messages = [d.message for d in diagnostics if (d.line, d.col, d.json_path) == item.key]
        assert any(item.fragment in m for m in messages), (
            f"no message at {item.key} contains {item.fragment!r}:\n{shown}"
        )
    assert all(d.severity == "error" for d in diagnostics), shown


def spec_repo(root: Path, name: str, content: bytes) -> Path:
    """A repository with the corpus servegen.yaml and one spec file."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CONFIG, root / "servegen.yaml")
    (root / "specs").mkdir()
    (root / "specs" / name).write_bytes(content)
    return root


# --- the corpus ---------------------------------------------------------------------------


def test_corpus_is_broad() -> None:
    assert len(INVALID) >= 45
    assert len(INVALID_CONFIG) >= 8


def test_corpus_config_is_valid(tmp_path: Path) -> None:
    """The shared servegen.yaml and a plain spec are fine: every diagnostic is the file's."""
    root = spec_repo(tmp_path, "tinyllama-chat.yaml", VALID_SPEC.encode())
    validated = validate_repository(root)
    assert validated.diagnostics == ()
    assert [spec.name for spec in validated.specs] == ["tinyllama-chat"]
    assert sorted(validated.specs[0].environments) == ["dev", "prod"]


@pytest.mark.parametrize("case", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_spec(case: Path, tmp_path: Path) -> None:
    root = spec_repo(tmp_path, case.name, case.read_bytes())
    validated = validate_repository(root)
    rel = f"specs/{case.name}"
    assert_diagnostics(validated.diagnostics, rel, expectations(case))
    assert not validated.ok
    assert validated.failed_files == {rel}, "every file with an error counts as failed"


@pytest.mark.parametrize("case", INVALID_CONFIG, ids=[p.stem for p in INVALID_CONFIG])
def test_invalid_config(case: Path, tmp_path: Path) -> None:
    tmp_path.joinpath("specs").mkdir()
    shutil.copyfile(case, tmp_path / "servegen.yaml")
    (tmp_path / "specs" / "tinyllama-chat.yaml").write_text(VALID_SPEC)
    validated = validate_repository(tmp_path)
    assert_diagnostics(validated.diagnostics, "servegen.yaml", expectations(case))
    assert "servegen.yaml" in validated.failed_files
    assert not validated.ok


# --- cases a header line cannot describe --------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n\n", b"   \n"], ids=["empty", "newlines", "blank"])
def test_empty_spec_file(content: bytes, tmp_path: Path) -> None:
    root = spec_repo(tmp_path, "empty.yaml", content)
    validated = validate_repository(root)
    assert_diagnostics(
        validated.diagnostics, "specs/empty.yaml", [Expected(1, 1, "", "holds no serve spec")]
    )


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """Nine levels of nine aliases (~387 million nodes) are refused, not expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    root = spec_repo(tmp_path, "bomb.yaml", ("\n".join(lines) + "\n").encode())
    validated = validate_repository(root)  # time to refuse: bench/bench_limits.py
    [diag] = validated.diagnostics
    assert diag.path == "specs/bomb.yaml"
    assert "too many nodes" in diag.message
    assert 1 <= diag.line <= len(lines) and diag.col >= 1


def test_duplicate_names_across_files(tmp_path: Path) -> None:
    root = spec_repo(tmp_path, "a.yaml", VALID_SPEC.encode())
    other = "# the same model again\n" + VALID_SPEC.replace("kubeai-text", "vllmserve-text")
    (root / "specs" / "nested").mkdir()
    (root / "specs" / "nested" / "b.yml").write_text(other)
    validated = validate_repository(root)
    got = sorted((d.path, d.line, d.col, d.json_path) for d in validated.diagnostics)
    assert got == [("specs/a.yaml", 2, 7, "name"), ("specs/nested/b.yml", 3, 7, "name")]
    messages = {d.path: d.message for d in validated.diagnostics}
    assert "also defined at specs/nested/b.yml:3:7" in messages["specs/a.yaml"]
    assert "also defined at specs/a.yaml:2:7" in messages["specs/nested/b.yml"]


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    """Validation never stops at the first bad file or the first bad document."""
    cases = [p for p in INVALID if p.stem in {"missing-kind", "engine-casing", "alias-bomb"}]
    root = spec_repo(tmp_path, "ok.yaml", VALID_SPEC.encode())
    for case in cases:
        shutil.copyfile(case, root / "specs" / case.name)
    validated = validate_repository(root)
    assert {d.path for d in validated.diagnostics} == {f"specs/{c.name}" for c in cases}
    assert [spec.name for spec in validated.specs] == ["tinyllama-chat"]
    assert validated.failed_files == {f"specs/{c.name}" for c in cases}


def test_diagnostic_format(tmp_path: Path) -> None:
    case = CORPUS / "invalid" / "unknown-kind.yaml"
    root = spec_repo(tmp_path, case.name, case.read_bytes())
    [diag] = validate_repository(root).diagnostics
    assert str(diag).startswith("specs/unknown-kind.yaml:2:7: error: kind: unknown kind ")


def test_disabled_environment_skips_its_override(tmp_path: Path) -> None:
    """An environment switched off is not merged, so its override is not judged."""
    spec = VALID_SPEC + "environments:\n  prod:\n    enabled: false\n    serve: {processors: 2}\n"
    root = spec_repo(tmp_path, "a.yaml", spec.encode())
    validated = validate_repository(root)
    assert validated.diagnostics == ()
    assert sorted(validated.specs[0].environments) == ["dev"]


@pytest.mark.parametrize(
    ("line", "where", "value"),
    [
        ("specs: linked/specs", "specs", "linked/specs"),
        ("output: linked/rendered", "output", "linked/rendered"),
        ("validation: {crds: [crds, linked/crds]}", "validation.crds[1]", "linked/crds"),
    ],
)
def test_a_folder_the_config_names_cannot_lead_out_through_a_link(
    line: str, where: str, value: str, tmp_path: Path
) -> None:
    """A link on the way (here its parent) would take servegen out of the repository."""
    outside = tmp_path / "outside"
    (outside / "specs").mkdir(parents=True)
    (outside / "crds").mkdir()
    root = spec_repo(tmp_path / "repo", "a.yaml", VALID_SPEC.encode())
    (root / "crds").mkdir()
    (root / "linked").symlink_to(outside)
    config = (root / "servegen.yaml").read_text()
    (root / "servegen.yaml").write_text(config + line + "\n")
    [diag] = validate_repository(root).diagnostics
    column = len(line) - len(value) + 1 if where != "validation.crds[1]" else line.index(value) + 1
    assert (diag.path, diag.line, diag.col, diag.json_path) == (
        "servegen.yaml",
        config.count("\n") + 1,
        column,
        where,
    )
    assert diag.message == f"{value!r} leads out of the repository through a symbolic link"


def test_a_crd_folder_without_crd_files_is_refused_at_its_entry(tmp_path: Path) -> None:
    root = spec_repo(tmp_path, "a.yaml", VALID_SPEC.encode())
    (root / "crds" / "notes").mkdir(parents=True)
    (root / "crds" / "notes" / "README.md").write_text("the CRDs go here\n")
    config = (root / "servegen.yaml").read_text()
    (root / "servegen.yaml").write_text(config + "validation: {crds: [crds]}\n")
    [diag] = validate_repository(root).diagnostics
    assert (diag.line, diag.col, diag.json_path) == (
        config.count("\n") + 1,
        21,
        "validation.crds[0]",
    )
    assert diag.message == "'crds': the folder holds no YAML or JSON file"


@pytest.mark.parametrize(
    ("arg", "refused"),
    [
        ("--max-num-batched-tokens=8192", False),
        ("--tokenizer=Qwen/Qwen2.5-1.5B-Instruct", False),
        ("--tokenizer-mode=auto", False),
        ("--enable-prompt-tokens-details", False),
        ("--served-model-name=Qwen2.5-0.5B-Instruct-AWQ-v2xyzABC123", False),
        ("--ssl-keyfile=/certs/key.pem", False),
        # The word names what the flag is about: vLLM's and KServe's own flags.
        ("--long-prefill-token-threshold=512", False),
        ("--return-tokens-as-token-ids", False),
        ("--return_token_type_ids", False),
        ("--api-key=abc", True),
        ("--api_key", True),
        ("--hf-token", True),
        ("--password=x", True),
        ("--aws-secret-key=x", True),
        ("AKIAIOSFODNN7EXAMPLE", True),
        ("--chat-template=sk-" + "a" * 24, True),
    ],
)
def test_credentials_in_engine_arguments(arg: str, refused: bool) -> None:
    assert (arg_credential_problem(arg) is not None) is refused


def test_only_credential_flags_of_the_servers_are_refused() -> None:
    # Every long flag of every listed vLLM release and KServe's Hugging Face backend.
    flags = {flag for release in release_flags().values() for flag in release.flags}
    flags |= hf_backend_flags(20)
    assert {flag for flag in flags if arg_credential_problem(flag)} == {"--api-key", "--hf-token"}


# --- the examples -------------------------------------------------------------------------


def test_examples_validate() -> None:
    validated = validate_repository(EXAMPLES)
    assert validated.diagnostics == (), "\n".join(map(str, validated.diagnostics))
    kinds = {spec.runtime.kind for spec in validated.specs}
    assert kinds == {
        "kubeai-text",
        "vllmserve-text",
        "vllmserve-speech",
        "vllmserve-pooling",
        "huggingfaceserve",
    }
    names = [spec.name for spec in validated.specs]
    assert len(names) == len(set(names)) == len(list((EXAMPLES / "specs").rglob("*.yaml")))
