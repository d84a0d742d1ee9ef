"""policy.pinned_environments: commit-SHA revisions and pinned images, positioned errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.validate import validate_repository

SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "@sha256:" + "a" * 64

CONFIG = """\
environments:
  staging: {}
  prod: {}
policy: {pinned_environments: [prod]%s}
"""


def diagnostics(tmp_path: Path, spec: str, extra: str = "") -> list[str]:
    (tmp_path / "specs").mkdir(exist_ok=True)
    (tmp_path / "servegen.yaml").write_text(CONFIG % extra)
    (tmp_path / "specs" / "m.yaml").write_text(spec)
    return [str(d) for d in validate_repository(tmp_path).diagnostics]


def test_a_branch_revision_in_a_pinned_environment_points_at_the_override(
    tmp_path: Path,
) -> None:
    spec = f"""\
kind: vllmserve-text
name: qwen
spec:
  url: hf://Qwen/Qwen2.5-7B-Instruct@main
  image: vllm/vllm-openai:v0.10.2
environments:
  prod:
    spec:
      url: hf://Qwen/Qwen2.5-7B-Instruct@v1.0
  staging:
    spec: {{url: "hf://Qwen/Qwen2.5-7B-Instruct@{SHA}"}}
"""
    assert diagnostics(tmp_path, spec) == [
        "specs/m.yaml:9:12: error: environments.prod.spec.url: pinned environment "
        "(policy.pinned_environments): hf:// models need a commit SHA revision (40 hex "
        "digits), got revision 'v1.0' (environment prod)"
    ]


def test_no_revision_and_the_runtime_default_image_are_refused_at_the_base(
    tmp_path: Path,
) -> None:
    spec = """\
kind: kubeai-text
name: chat
spec:
  url: hf://Qwen/Qwen2.5-7B-Instruct
"""
    assert diagnostics(tmp_path, spec) == [
        "specs/m.yaml:4:3: error: spec.image: pinned environment (policy.pinned_environments): "
        "set spec.image; a default image changes when the platform is upgraded "
        "(environment prod)",
        "specs/m.yaml:4:8: error: spec.url: pinned environment (policy.pinned_environments): "
        "hf:// models need a commit SHA revision (40 hex digits), got no revision "
        "(environment prod)",
    ]


@pytest.mark.parametrize(
    ("image", "extra", "problem"),
    [
        # Every image must have a tag other than latest, pinned environment or not.
        (
            "substratusai/vllm",
            "",
            "image 'substratusai/vllm' must be pinned to a tag other than 'latest' or a digest",
        ),
        (
            "substratusai/vllm:latest",
            "",
            "image 'substratusai/vllm:latest' must be pinned to a tag other than 'latest' or "
            "a digest",
        ),
        (
            "substratusai/vllm:v0.6.3",
            ", pinned_image_digest: true",
            "pinned environment (policy.pinned_environments): image 'substratusai/vllm:v0.6.3' "
            "needs a digest (policy.pinned_image_digest)",
        ),
        ("substratusai/vllm:v0.6.3", "", None),
        (f"substratusai/vllm{DIGEST}", ", pinned_image_digest: true", None),
    ],
)
def test_image_pinning(tmp_path: Path, image: str, extra: str, problem: str | None) -> None:
    spec = f"""\
kind: kubeai-text
name: chat
spec:
  url: hf://Qwen/Qwen2.5-7B-Instruct@{SHA}
environments:
  prod:
    spec: {{image: "{image}"}}
"""
    expected = (
        [f"specs/m.yaml:7:19: error: environments.prod.spec.image: {problem} (environment prod)"]
        if problem
        else []
    )
    assert diagnostics(tmp_path, spec, extra) == expected


def test_other_locations_and_unpinned_environments_pass(tmp_path: Path) -> None:
    spec = """\
kind: huggingfaceserve
name: bert
spec:
  path: s3://models/bert
  image: kserve/huggingfaceserver:v0.15.0
---
kind: kubeai-text
name: chat
spec:
  url: hf://Qwen/Qwen2.5-7B-Instruct@main
environments:
  prod: {enabled: false}
"""
    assert diagnostics(tmp_path, spec) == []


def test_kserve_model_revision_counts_as_the_revision(tmp_path: Path) -> None:
    spec = f"""\
kind: huggingfaceserve
name: bert
spec:
  path: hf://google-bert/bert-base-uncased
  image: kserve/huggingfaceserver:v0.15.0
serve:
  model_revision: {SHA}
"""
    assert diagnostics(tmp_path, spec) == []


def test_pinning_an_undeclared_environment_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "servegen.yaml").write_text(
        "environments: {prod: {}}\npolicy: {pinned_environments: [production]}\n"
    )
    assert next(str(d) for d in validate_repository(tmp_path).diagnostics) == (
        "servegen.yaml:1:1: error: policy.pinned_environments names undeclared "
        "environment(s) production (declared: prod)"
    )
