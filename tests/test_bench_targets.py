"""bench/targets.py: the README's table of targets is the one its recorded figures give."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO_ROOT


def _targets() -> ModuleType:
    path = REPO_ROOT / "bench" / "targets.py"
    spec = importlib.util.spec_from_file_location("bench_targets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


targets = _targets()


def _figures(scale: float) -> dict[str, Any]:
    """Figures shaped as the scripts write them: a tenth of every limit times `scale`."""
    size = {name: [scale * 0.15, scale * 20] for name in targets.UNCHANGED}
    size[targets.ONE_CHANGED] = [scale * 0.1, scale * 20]
    size[targets.VALUE_CHANGED] = [scale * 0.2, scale * 18]
    size[targets.ADDED] = [scale * 0.16, scale * 19]
    size[targets.REMOVED] = [scale * 0.17, scale * 21]
    size[targets.COLD] = [scale * 0.8, scale * 20]
    size[targets.CP] = [2.0, 35]
    size[targets.PUBLISH_FIRST] = [scale * 3.0, scale * 19]
    size[targets.PUBLISH_ONE] = [scale * 0.4, scale * 17]
    size[targets.DIFF] = [scale * 0.12, scale * 16]
    size[targets.GIT_DIFF] = [0.02, 10]
    return {
        "machine": {"date": "2026-01-01", "cpus": 2, "system": "Linux x86_64", "load": 0.5},
        "cache": {"10000": size},
        "publish": {
            "publish": [scale * 0.05] * 3,
            "render": [0.01] * 3,
            "deploy": [0.01] * 3,
            "yardstick": [0.03] * 3,
        },
        "watch": {
            "publish": {
                "samples": [{"output_s": 0.01, "deploy_s": scale * 0.025}] * 3,
                "yardstick": [9.0, 11.0],
            }
        },
        "coldstart": {
            "`python -c pass`": [0.04],
            "`python -c 'import pydantic'`": [0.1],
            "`python -c 'import <the libraries validate uses>'`": [0.15],
            "`python -c 'import <what validate imports before it reads a file>'`": [0.18],
            "`servegen validate`, 1 spec (a.yaml)": [scale * 0.02],
            "`servegen validate`, 1 spec (b.yaml)": [scale * 0.025],
        },
        "kustomize": {"1000": {targets.COLD: [0.9, 60], targets.KUSTOMIZE: [17.5, 400]}},
    }


@pytest.mark.parametrize(("scale", "met"), [(1.0, "yes"), (100.0, "no")])
def test_every_target_is_judged_against_its_limit(scale: float, met: str) -> None:
    rows = targets.table(_figures(scale)).splitlines()[4:]
    assert len(rows) == len(targets.ROWS) == 10
    assert [row.split(" | ")[3] for row in rows] == [met] * 10


def test_a_row_the_figures_predate_is_left_out() -> None:
    """Figures kept before the publish and diff rows existed make the table without them."""
    figures = _figures(1.0)
    for name in (targets.PUBLISH_FIRST, targets.PUBLISH_ONE, targets.DIFF, targets.GIT_DIFF):
        del figures["cache"]["10000"][name]
    rows = targets.table(figures).splitlines()[4:]
    assert len(rows) == len(targets.ROWS) - 2
    assert not any("publish --push`:" in row or "`diff" in row for row in rows)


def test_each_row_carries_its_yardstick_from_the_same_figures() -> None:
    text = targets.table(_figures(1.0))
    assert "| 0.15 / 0.15 / 0.15 s | < 1.5 s | yes | `cp -r` of the output 2.00 s |" in text
    assert "| 50 ms (render 10 ms, deploy commit 10 ms) | < 500 ms |" in text
    assert "| 0.10 / 0.20 s | < 2 s | yes |" in text
    assert "`git commit` of the spec 10 ms" in text  # median of 9 and 11 ms
    assert "| 20\u201325 ms | < 250 ms | yes | `python -c pass` 40 ms" in text  # an en dash
    assert "`import pydantic` 100 ms, importing the libraries it needs 150 ms, " in text
    assert "importing those and servegen's modules 180 ms |" in text
    assert "| 0.16 / 0.17 s | < 2 s | yes |" in text  # a spec file added / removed
    assert "| 0.12 s (16 MB) | < 2 s | yes | `git diff HEAD~1` 20 ms |" in text
    assert "| 20 / 20 / 21 / 20 MB | < 200 MB | yes | `cp -r` of the output 35 MB |" in text
    assert "| 19 / 17 MB (3.00 / 0.40 s) | < 200 MB | yes | `cp -r` of the output 35 MB |" in text
    assert (  # the cold render's, where kubectl kustomize finishes
        "| 0.80 s | < 8 s | yes | `cp -r` of the output 2.00 s; at 1,000 specs, same run: "
        "servegen's cold render 0.90 s, `kubectl kustomize` of every environment 17.50 s |"
    ) in text


def test_figures_without_the_kustomize_run_give_the_cold_row_its_copy_alone() -> None:
    figures = _figures(1.0)
    del figures["kustomize"]
    text = targets.table(figures)
    assert "| 0.80 s | < 8 s | yes | `cp -r` of the output 2.00 s |" in text
    assert "kustomize" not in text


def test_the_table_replaces_only_what_lies_between_the_markers() -> None:
    readme = f"before\n{targets.BEGIN}\nold\n{targets.END}\nafter\n"
    updated = targets.replace_table(readme, "new table")
    assert updated == f"before\n{targets.BEGIN}\nnew table\n{targets.END}\nafter\n"
    assert targets.readme_table(updated) == "new table"


def test_the_readme_shows_the_table_of_the_recorded_figures() -> None:
    figures = json.loads((REPO_ROOT / "bench" / "results" / "targets.json").read_text())
    readme = (REPO_ROOT / "README.md").read_text()
    assert targets.readme_table(readme) == targets.table(figures)
