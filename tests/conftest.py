"""Shared fixtures: the bundled upstream CRDs, the example repository, throwaway repositories."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.gitutil import isolate_git

# No per-example deadline anywhere: on a loaded machine one slow example is re-run, and a
# fast re-run makes Hypothesis report the test as flaky. Speed is measured in bench/.
# (Built on whatever profile is loaded: Hypothesis' own `ci` one when CI is set.)
settings.register_profile("servegen", parent=settings.default, deadline=None)
settings.load_profile("servegen")

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
OUTPUT = REPO_ROOT / "output"


@pytest.fixture(scope="session")
def crds_dir() -> Path:
    """The upstream CRDs bundled with servegen (what validation uses by default)."""
    from generator.crds import bundled_dir

    path = bundled_dir()
    assert (path / "kubeai.org_models.yaml").is_file(), f"bundled CRDs missing from {path}"
    return path


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A private copy of examples/ the test may change."""
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLES, target)
    return target


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep servegen's CRD cache out of the real home directory during tests."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(autouse=True)
def _private_build_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test starts with an empty build cache, so none reuses another's results.

    It lives outside the test's own tmp_path, which tests snapshot whole."""
    from generator import buildcache

    cache = tmp_path_factory.mktemp("build-cache")
    monkeypatch.setattr(buildcache, "cache_dir", lambda: cache)


@pytest.fixture
def git_identity() -> tuple[tuple[str, str], tuple[str, str]]:
    """(author, committer) the isolated git environment sets; a module may override it."""
    return ("Ada Author", "ada@example.com"), ("Servegen Bot", "bot@example.com")


@pytest.fixture
def isolated_git(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    git_identity: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    """A private global git config and identity; no inherited GIT_* or SERVEGEN_*."""
    author, committer = git_identity
    isolate_git(tmp_path, monkeypatch, author=author, committer=committer)
