"""Spec trees for incremental builds: generated specs, an extra environment, one-shot renders."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from generator.pipeline import build
from generator.write import MANIFEST, manifest_bytes

CONFIG_EXTRA_ENV = """
  staging:
    namespace: llm-staging
    labels: {environment: staging}
"""


def spec_text(name: str, replicas: int = 2) -> str:
    return (
        "kind: kubeai-text\n"
        f"name: {name}\n"
        "spec:\n"
        f"  url: hf://org/{name}\n"
        "  engine: VLLM\n"
        "  features: [TextGeneration]\n"
        "serve:\n"
        "  resource_profile: cpu\n"
        f"  scaling: {{min_replicas: 1, max_replicas: {replicas}}}\n"
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def one_shot(repo: Path, crds: Iterable[Path]) -> dict[str, bytes]:
    """What `servegen render` writes for the tree as it is now (with its manifest),
    computed afresh: full objects bypass the build cache that incremental builds use."""
    files = build(repo, crds=tuple(crds), keep_objects=True).files
    return {**files, MANIFEST: manifest_bytes(files)}


def env_added(text: str) -> str:
    """servegen.yaml's text with one more environment (what add_env() writes)."""
    marker = "environments:\n"
    return text.replace(marker, marker + CONFIG_EXTRA_ENV.lstrip("\n"), 1)


def add_env(repo: Path) -> None:
    config = repo / "servegen.yaml"
    config.write_text(env_added(config.read_text()))
