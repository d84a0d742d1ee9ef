"""Helpers shared by the build cache's tests (test_buildcache.py, test_wholebuild.py, and
the watch's, which start from it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from generator import buildcache, pipeline
from generator.config import Config
from generator.errors import Diagnostic, RenderError
from generator.render import ModelRender, render_spec
from generator.validate import ValidatedSpec, load_config


def entries() -> list[Path]:
    return sorted(buildcache.cache_dir().rglob("*.json"))


def spied_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the spec files' entries buildcache.load() is asked for from now on."""
    loaded: list[str] = []
    real = buildcache.load

    def load(key: str) -> buildcache.CachedFile | None:
        loaded.append(key)
        return real(key)

    monkeypatch.setattr(buildcache, "load", load)
    return loaded


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


def passing_files(root: Path) -> list[buildcache.CachedFile]:
    """What the build cache keeps of each passing spec file of the repository at `root`,
    plus a file of one model whose summary and files hold non-ASCII text and JSON
    escapes, and a file of two models with a warning."""
    config, problems = load_config(root)
    assert not problems
    repository = pipeline.Repository(root, config)
    repository.update(repository.scan())
    found = [pipeline._cached(s) for s in repository.ordered() if s.passed]
    first = found[0].models[0]
    odd = dataclasses.replace(
        first,
        model=dataclasses.replace(first.model, path='specs/ü "\\\u2028.yaml'),
        files={f"{path}\u00e9": b'x: "\\u00e9 \\" \xc3\xa9"\n' for path in first.files},
    )
    warning = Diagnostic("specs/two.yaml", 2, 3, "spec.note", "a warning, ü")
    two = dataclasses.replace(found[0], models=(first, found[1].models[0]), warnings=(warning,))
    return [*found, dataclasses.replace(found[0], models=(odd,)), two]
