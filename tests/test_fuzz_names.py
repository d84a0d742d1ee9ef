"""Whatever a file or folder is called, the rendered tree never gains an object or a key."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from generator.errors import InvalidInputError
from generator.layout import HEADER
from generator.pipeline import build
from tests.conftest import EXAMPLES
from tests.fuzzing import fuzzed
from tests.specrepo import empty_spec_repo

SPEC = EXAMPLES / "specs" / "vllm" / "qwen-chat.yaml"
PIECES = st.sampled_from(
    [
        "\n",
        "\r",
        "\r\n",
        "\x85",
        "\u2028",
        "\u2029",
        "\x1b[2J",
        "\x7f",
        "\t",
        "---",
        "...",
        "apiVersion: v1",
        "kind: ConfigMap",
        "- ",
        ": ",
        "#",
        "{",
        "}",
        "&a",
        "*a",
        "'",
        '"',
        "%",
        "::error ",
        "é",
        "\u202e",
        "\ufeff",
        " ",
    ]
) | st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]), max_size=4)
NAME = (
    st.lists(PIECES, min_size=1, max_size=4)
    .map("".join)
    .filter(lambda n: bool(n) and not n.startswith(".") and len(n.encode()) < 200)
)


def parsed(files: Mapping[str, bytes]) -> dict[str, Any]:
    """Every output file as data: YAML documents (comments dropped), JSON, or text."""
    out: dict[str, Any] = {}
    for path, data in files.items():
        if path.endswith(".yaml"):
            out[path] = list(YAML(typ="safe", pure=True).load_all(data.decode()))
        elif path.endswith(".json"):
            out[path] = json.loads(data)
        else:
            out[path] = data.decode()
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_spec_repo(tmp_path_factory.mktemp("names"))


@pytest.fixture(scope="module")
def baseline(repo: Path, crds_dir: Path) -> dict[str, Any]:
    (repo / "specs" / "chat.yaml").write_bytes(SPEC.read_bytes())
    try:
        return parsed(build(repo, crds=[crds_dir]).files)
    finally:
        (repo / "specs" / "chat.yaml").unlink()


@fuzzed(150)
@given(folder=NAME, name=NAME)
def test_names_never_add_objects_or_keys(
    repo: Path, crds_dir: Path, baseline: dict[str, Any], folder: str, name: str
) -> None:
    target = repo / "specs" / folder / f"{name}.yaml"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(SPEC.read_bytes())
    except OSError:  # a name this file system refuses cannot reach servegen either
        shutil.rmtree(repo / "specs" / folder, ignore_errors=True)
        return
    try:
        result = build(repo, crds=[crds_dir])
    except InvalidInputError as exc:
        for diagnostic in exc.diagnostics:
            assert (diagnostic.line, diagnostic.col) == (1, 1)
            assert "unprintable character" in diagnostic.message
            assert str(diagnostic).isprintable()
        return
    finally:
        shutil.rmtree(repo / "specs" / folder)
    assert parsed(result.files) == baseline
    for path, data in result.files.items():
        if path.endswith(".yaml"):
            header, _, _ = data.decode().partition("\n")
            assert header.startswith(HEADER.split("{")[0]) and header.isprintable()
