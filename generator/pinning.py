"""`policy.pinned_environments`: what a production-like environment may run.

A Hugging Face branch or tag (`main`, `v1`) can move under a running deployment, and so
can an image tag like `latest` or a runtime's default image (it changes when KubeAI or
KServe is upgraded). In a pinned environment every model names a commit SHA and an
image of its own, so what was tested is what runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from generator.config import Config
from generator.spec import AnySpecDocument
from generator.versions import version_of
from runtimes.base import Problem, Runtime

# Hugging Face revisions are git commits: 40 hex digits (sha1) name one for good.
_COMMIT = re.compile(r"[0-9a-f]{40}")
_DIGEST = re.compile(r".+@sha256:[0-9a-f]{64}")
_HF_SCHEMES = ("hf://", "huggingface://")


def pinning_problems(
    runtime: Runtime[Any], doc: AnySpecDocument, config: Config, env: str
) -> Iterable[Problem]:
    if env not in config.policy.pinned_environments:
        return
    why = "pinned environment (policy.pinned_environments)"
    location_field = doc.location_field
    location = str(getattr(doc.spec, location_field))
    revision = version_of(doc).revision
    if location.startswith(_HF_SCHEMES) and not (revision and _COMMIT.fullmatch(revision)):
        got = f"revision {revision!r}" if revision else "no revision"
        yield Problem(
            ("spec", location_field),
            f"{why}: hf:// models need a commit SHA revision (40 hex digits), got {got}",
        )
    image = getattr(doc.spec, "image", None)
    if image is None:
        yield Problem(
            ("spec", "image"),
            f"{why}: set spec.image; a default image changes when the platform is upgraded",
        )
        return
    # A tag other than `latest` is required everywhere (config.PinnedImage); a pinned
    # environment may also demand a digest.
    if config.policy.pinned_image_digest and not _DIGEST.fullmatch(image):
        yield Problem(
            ("spec", "image"),
            f"{why}: image {image!r} needs a digest (policy.pinned_image_digest)",
        )
