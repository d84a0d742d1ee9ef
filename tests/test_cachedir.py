"""Where the caches live: an absolute XDG_CACHE_HOME, else ~/.cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator import crdschemas, outindex
from generator.cachedir import servegen_cache


def test_an_absolute_xdg_cache_home_holds_every_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert servegen_cache() == tmp_path / "xdg" / "servegen"
    assert crdschemas.cache_dir() == servegen_cache() / "crds"
    index = outindex.index_path(tmp_path / "out")
    assert index is not None and index.parent.parent == servegen_cache()


@pytest.mark.parametrize("value", ["relative/cache", "", "."])
def test_a_relative_xdg_cache_home_is_ignored(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken as it is, it put the cache inside the spec repository servegen ran in."""
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert servegen_cache() == tmp_path / "home" / ".cache" / "servegen"
