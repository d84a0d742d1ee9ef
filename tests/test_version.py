"""generator/version.py reads versions from dist-info folder names: the same answers as
importlib.metadata, which parses each METADATA file."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

from generator import version

# servegen itself and what the build key names, spelled as their folders are not.
DISTRIBUTIONS = (
    "servegen",
    "pydantic",
    "pydantic-core",
    "pydantic_core",
    "Jinja2",
    "jinja2",
    "ruamel.yaml",
    "jsonschema-rs",
    "watchfiles",
    "kubernetes",
)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_installed_version_matches_importlib_metadata(name: str) -> None:
    assert version.installed_version(name) == metadata.version(name)


def test_a_distribution_that_is_not_installed_has_no_version() -> None:
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("servegen-no-such-distribution")
    assert version.installed_version("servegen-no-such-distribution") is None


def test_the_first_folder_on_sys_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "Some_Dist-1.2.dist-info").mkdir(parents=True)
    (second / "some.dist-9.0.dist-info").mkdir(parents=True)
    (second / "other-3.dist-info").mkdir(parents=True)
    (second / "not-a-dist").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(first), str(second)])
    version._dist_infos.cache_clear()
    try:
        assert version.installed_version("some-dist") == "1.2"
        assert version.installed_version("OTHER") == "3"
        assert version.installed_version("not") is None
    finally:
        version._dist_infos.cache_clear()
