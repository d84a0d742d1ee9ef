"""A second opinion from an installed `kubeconform` binary (`validation.kubeconform`).

Objects go to kubeconform on stdin as JSON documents; the converted CRD schemas are written
where its `-schema-location` template finds them. Its built-in schemas come from its
`default` location, which downloads them over HTTP: this needs network access or
kubeconform's own cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from generator.errors import ServegenError
from generator.k8sschemas import VERSION_RE
from generator.objectproblems import ObjectProblem
from generator.yamlio import format_path

MODES = ("auto", "always", "never")


def find_kubeconform(mode: str) -> str | None:
    """The binary to run for `mode`, None for none; ServegenError for "always" without one."""
    if mode not in MODES:
        raise ServegenError(
            f"invalid kubeconform setting {mode!r}: expected one of {', '.join(MODES)}"
        )
    if mode == "never":
        return None
    binary = shutil.which("kubeconform")
    if binary is None and mode == "always":
        raise ServegenError("kubeconform is set to 'always' but no kubeconform binary is on PATH")
    return binary


def kubeconform_command(binary: str, kubernetes_version: str, schema_dir: Path) -> list[str]:
    """The kubeconform command line: objects on stdin, CRD schemas from `schema_dir`."""
    match = VERSION_RE.match(kubernetes_version.strip())
    assert match is not None  # the caller has already resolved the version
    version = f"{match[1]}.{match[2]}.{match[3] or 0}"
    template = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    crd_location = f"{schema_dir}{os.sep}{template}"
    return [
        binary,
        "-strict",
        "-output",
        "json",
        "-kubernetes-version",
        version,
        "-schema-location",
        "default",
        "-schema-location",
        crd_location,
        "-",
    ]


def write_crd_schemas(schema_dir: Path, schemas: Iterable[tuple[str, str, Any]]) -> None:
    """Standalone (apiVersion, kind, schema) in kubeconform's `{group}/{kind}_{version}.json`."""
    for api_version, kind, schema in schemas:
        group, _, version = api_version.rpartition("/")
        target = schema_dir / group / f"{kind.lower()}_{version}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(schema), encoding="utf-8")


def run_kubeconform(command: list[str], objects: list[Mapping[str, Any]]) -> list[ObjectProblem]:
    # JSON is YAML, so a stream of JSON documents is a valid multi-document input.
    stdin = "".join(f"---\n{json.dumps(obj, default=str)}\n" for obj in objects)
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServegenError(f"cannot run kubeconform: {exc}") from exc
    if done.returncode not in (0, 1) or not done.stdout.strip():
        detail = done.stderr.strip() or f"exit status {done.returncode}"
        raise ServegenError(f"kubeconform failed: {detail}")
    return parse_kubeconform_output(done.stdout)


def parse_kubeconform_output(output: str) -> list[ObjectProblem]:
    """Problems from `kubeconform -output json`: one per validation error, else per resource."""
    try:
        resources = json.loads(output).get("resources") or []
    except (ValueError, AttributeError) as exc:
        raise ServegenError(f"kubeconform printed something that is not its JSON: {exc}") from exc
    problems = []
    for resource in resources:
        if resource.get("status") not in ("statusInvalid", "statusError"):
            continue
        ident = (
            str(resource.get("version", "")),
            str(resource.get("kind", "")),
            str(resource.get("name", "")),
        )
        details = resource.get("validationErrors") or []
        if not details:
            problems.append(ObjectProblem(*ident, "", f"kubeconform: {resource.get('msg', '')}"))
        for detail in details:
            path = _pointer_to_path(str(detail.get("path", "")))
            problems.append(ObjectProblem(*ident, path, f"kubeconform: {detail.get('msg', '')}"))
    return problems


def _pointer_to_path(pointer: str) -> str:
    """JSON pointer `/spec/containers/0/image` -> `spec.containers[0].image`."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    return format_path([int(t) if t.isascii() and t.isdigit() else t for t in tokens])
