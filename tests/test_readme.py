"""The README's "How it works" table is the map of the code: it must name every module;
and its YAML examples are YAML as servegen reads it."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import pytest

from generator.cli import build_parser
from generator.crds import bundled_files
from generator.validate import validate_repository
from generator.yamlio import load_documents
from tests.conftest import REPO_ROOT


def _how_it_works() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## How it works")
    return text[start : text.index("\n## ", start + 1)]


def _named(section: str) -> set[str]:
    names = set(re.findall(r"`((?:generator|runtimes)/[\w/]+\.py)`", section))
    if "`generator/commands/<command>.py`" in section:
        names |= {f"generator/commands/{p.name}" for p in _modules("generator/commands")}
    return names


def _modules(folder: str) -> list[Path]:
    return [p for p in (REPO_ROOT / folder).glob("*.py") if p.name not in ("__init__.py",)]


def test_every_module_is_on_the_map() -> None:
    section = _how_it_works()
    named = _named(section)
    modules = {
        p.relative_to(REPO_ROOT).as_posix()
        for folder in ("generator", "runtimes")
        for p in _modules(folder)
        if p.name != "__main__.py"
    } | {"runtimes/__init__.py"}
    assert sorted(modules - named) == []
    assert sorted(m for m in named if not (REPO_ROOT / m).is_file()) == []


def test_the_map_check_sees_a_missing_module() -> None:
    section = _how_it_works().replace("`generator/outtree.py`", "`outtree`")
    assert "generator/outtree.py" not in _named(section)


def _yaml_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize("block", _yaml_blocks())
def test_every_yaml_example_reads(block: str) -> None:
    """Readers copy these (flow mappings holding URLs and image tags among them)."""
    assert load_documents(block)


def _command_rows() -> dict[str, set[str]]:
    """The options each row of the CLI reference's command table names."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `servegen (\w+) ([^`]*)` \|", text, flags=re.MULTILINE)
    return {command: set(re.findall(r"--[a-z-]+", usage)) for command, usage in rows}


def test_the_command_table_names_every_option() -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    rows = _command_rows()
    assert sorted(rows) == sorted(commands.choices)
    for name, sub in commands.choices.items():
        options = {o for a in sub._actions for o in a.option_strings if o.startswith("--")}
        assert rows[name] == options - {"--help"}, name


def test_the_config_example_validates(tmp_path: Path) -> None:
    """The README's servegen.yaml, its `{...}` and `[...]` placeholders emptied."""
    [config] = [b for b in _yaml_blocks() if b.startswith("specs: specs")]
    text = config.replace("{...}", "{}").replace("[...]", "[]")
    (tmp_path / "servegen.yaml").write_text(text)
    (tmp_path / "specs").mkdir()
    (tmp_path / "crds").mkdir()
    shutil.copy(bundled_files()[0], tmp_path / "crds")
    problems = [str(d) for d in validate_repository(tmp_path).diagnostics]
    assert problems == []
