"""Helpers shared by the build cache's tests (test_buildcache.py, test_wholebuild.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator import buildcache, pipeline
from generator.config import Config
from generator.errors import RenderError
from generator.render import ModelRender, render_spec
from generator.validate import ValidatedSpec


def entries() -> list[Path]:
    return sorted(buildcache.cache_dir().rglob("*.json"))


def head(path: Path) -> dict[str, object]:
    """An entry's JSON (a whole build's: its first line; its files' bytes follow)."""
    found: dict[str, object] = json.loads(path.read_bytes().split(b"\n", 1)[0])
    return found


def no_render(*_: object) -> object:
    raise RenderError("rendered again")


def no_validation(*_: object) -> object:
    raise AssertionError("validated again")


class Counting:
    """render_spec, counting the models it renders."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._render = render_spec  # what pipeline.render_spec names

    def __call__(self, spec: ValidatedSpec, config: Config) -> ModelRender:
        model = self._render(spec, config)
        self.names.append(model.name)
        return model

    @classmethod
    def installed(cls, monkeypatch: pytest.MonkeyPatch) -> Counting:
        """A counter that the pipeline renders through (for a `renders` fixture)."""
        counting = cls()
        monkeypatch.setattr(pipeline, "render_spec", counting)
        return counting
