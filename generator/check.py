"""Check rendered Kubernetes objects the way the API server will judge them, fast.

`ManifestChecker` sends each object to the schema of its kind and collects the problems:
- built-in kinds: the strict schemas of generator/k8sschemas.py (kubernetes-validate's
  bundle for the configured Kubernetes version);
- custom resources: their CRD's schema, converted by generator/crdschemas.py; CRDs come
  from the configured sources first, and the bundled ones (generator/crds.py) cover only
  the kinds no source defines. A custom resource with no CRD at all is not an error: its
  kind is reported in `CheckResult.skipped_kinds` so the caller can say so once;
- optionally (`kubeconform="auto"|"always"`) a second opinion from generator/kubeconform.py.

Names, label keys and values and quantities follow generator/k8sformats.py; problems are
worded by generator/objectproblems.py. Not checked, because no schema can say it without
the API server's code: CEL rules, uniqueness of list-map keys, `format`s, and the
hand-written Go validation of built-in kinds (e.g. duplicate container names).

Compiled validators are cached per process by what they were built from (Kubernetes
version, kind, CRD content key), so after warm-up an object costs a dictionary lookup and
one pass of the Rust validator (`jsonschema_rs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs

from generator import k8sschemas
from generator.crdschemas import CrdIndex, load_crd_index
from generator.errors import ServegenError
from generator.k8sschemas import JSON, Version, resolve_kubernetes_version
from generator.objectproblems import ObjectProblem, schema_problems, short
from generator.yamlio import format_path

__all__ = [
    "CheckResult",
    "ManifestChecker",
    "ObjectProblem",
    "format_path",
    "resolve_kubernetes_version",
]


@dataclass(frozen=True)
class CheckResult:
    """All problems found, and the custom-resource kinds (`group/version/Kind`) not checked."""

    problems: tuple[ObjectProblem, ...]
    skipped_kinds: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


_COMPILED: dict[tuple[Any, ...], jsonschema_rs.Validator] = {}


def _compile(
    key: tuple[Any, ...], build: Callable[[], JSON], source: str = ""
) -> jsonschema_rs.Validator:
    """Compile once per process: the same schema is shared by every ManifestChecker.
    `source` names the file the schema came from, for the message when it cannot be."""
    validator = _COMPILED.get(key)
    if validator is None:
        schema = build()
        try:
            # offline: a `$ref` to anything outside the schema (a file, a URL) is an
            # error, never fetched; CRD schemas may not hold one at all (crdconvert).
            validator = jsonschema_rs.validator_for(schema, offline=True)
        except (ValueError, jsonschema_rs.ReferencingError) as exc:
            first = str(exc).strip().split("\n", 1)[0]  # the rest dumps the schema
            where = f"{source}: " if source else ""
            raise ServegenError(
                f"{where}schema for {key[1]}/{key[2]} cannot be compiled: {first}"
            ) from exc
        _COMPILED[key] = validator
    return validator


@dataclass(frozen=True)
class _Target:
    validator: jsonschema_rs.Validator | None = None
    skipped: str = ""  # set for a custom resource without a configured CRD
    problem: str = ""  # set when the kind itself cannot be judged


class ManifestChecker:
    """Judge rendered objects against Kubernetes `kubernetes_version` and the given CRDs.

    `bundled_crds` apply to the kinds no file of `crd_sources` defines.

    Raises ServegenError for an unsupported version, a missing or unparsable CRD source,
    or `kubeconform="always"` without a kubeconform binary on PATH.
    """

    def __init__(
        self,
        kubernetes_version: str,
        crd_sources: Sequence[Path] = (),
        kubeconform: str = "never",
        bundled_crds: Sequence[Path] = (),
    ) -> None:
        self.schema_version: Version = resolve_kubernetes_version(kubernetes_version)
        self._requested_version = kubernetes_version
        self._definitions = k8sschemas.definitions(self.schema_version)
        self._crd_sources = [Path(p) for p in crd_sources]
        self._bundled_crds = tuple(bundled_crds)
        self._crd_index: CrdIndex | None = None
        if self._crd_sources:  # configured CRDs are judged now: a broken one is named first
            self._crd_index = load_crd_index(self._crd_sources, self._bundled_crds)
        self._kubeconform = _kubeconform_binary(kubeconform)
        self._targets: dict[tuple[str, str], _Target] = {}

    @property
    def _crds(self) -> CrdIndex:
        """The CRDs, read when a custom resource is first met (with only the bundled
        ones, a repository rendering built-in kinds never reads the 2 MB KServe CRD)."""
        if self._crd_index is None:
            self._crd_index = load_crd_index(self._crd_sources, self._bundled_crds)
        return self._crd_index

    def check(self, objects: Iterable[Mapping[str, Any]]) -> CheckResult:
        problems: list[ObjectProblem] = []
        skipped: dict[str, None] = {}
        passed: list[Mapping[str, Any]] = []  # judged and found valid
        for obj in objects:
            target, found = self._check_one(obj)
            problems.extend(found)
            if target is not None and target.skipped:
                skipped[target.skipped] = None
            elif target is not None and target.validator is not None and not found:
                passed.append(obj)
        if self._kubeconform and passed:
            # Only a second opinion on what passed here: an object already rejected would
            # just have its problems reported twice, in kubeconform's words.
            problems.extend(self._second_opinion(passed))
        return CheckResult(tuple(problems), tuple(skipped))

    def _check_one(self, obj: Any) -> tuple[_Target | None, list[ObjectProblem]]:
        if not isinstance(obj, Mapping):
            return None, [ObjectProblem("", "", "", "", f"not an object: {short(obj)}")]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        name = name if isinstance(name, str) else ""
        if not isinstance(api_version, str) or not isinstance(kind, str):
            missing = "apiVersion" if not isinstance(api_version, str) else "kind"
            problem = ObjectProblem(
                str(api_version or ""),
                str(kind or ""),
                name,
                missing,
                "required field is missing or not a string",
            )
            return None, [problem]
        target = self._target(api_version, kind)
        if target.problem:
            return target, [ObjectProblem(api_version, kind, name, "kind", target.problem)]
        if target.validator is None:
            return target, []
        return target, [
            ObjectProblem(api_version, kind, name, path, message)
            for path, message in schema_problems(target.validator, obj)
        ]

    def _target(self, api_version: str, kind: str) -> _Target:
        key = (api_version, kind)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = self._make_target(api_version, kind)
        return target

    def _make_target(self, api_version: str, kind: str) -> _Target:
        version = self.schema_version
        definitions = self._definitions
        if (api_version, kind) in definitions.by_gvk:
            return _Target(
                _compile(
                    ("builtin", api_version, kind, version),
                    lambda: k8sschemas.builtin_schema(definitions, api_version, kind),
                )
            )
        crd = self._crds.files.get((api_version, kind))
        if crd is not None:
            return _Target(
                _compile(
                    ("crd", api_version, kind, version, crd.key),
                    lambda: k8sschemas.bundle(crd.schema((api_version, kind)), definitions),
                    str(crd.path),
                )
            )
        if k8sschemas.is_builtin_group(api_version):
            return _Target(
                problem=f"no schema for {api_version}/{kind} in Kubernetes "
                f"{version[0]}.{version[1]}"
            )
        group, _, wanted = api_version.rpartition("/")
        served = self._crds.served.get((group, kind))
        if served:
            return _Target(
                problem=f"the configured CRD for {group} {kind} does not serve "
                f"version {wanted} (served: {', '.join(served)})"
            )
        return _Target(skipped=f"{api_version}/{kind}")

    def _second_opinion(self, objects: list[Mapping[str, Any]]) -> list[ObjectProblem]:
        import tempfile  # here, like the bridge itself: most runs have no kubeconform

        from generator import kubeconform

        assert self._kubeconform is not None
        schemas = [
            (*kind, k8sschemas.bundle(crd.schema(kind), self._definitions))
            for kind, crd in self._crds.files.items()
        ]
        with tempfile.TemporaryDirectory(prefix="servegen-kubeconform-") as tmp:
            schema_dir = Path(tmp)
            kubeconform.write_crd_schemas(schema_dir, schemas)
            command = kubeconform.kubeconform_command(
                self._kubeconform, self._requested_version, schema_dir
            )
            return kubeconform.run_kubeconform(command, objects)


def _kubeconform_binary(mode: str) -> str | None:
    if mode == "never":
        return None  # and nothing of the bridge is imported
    from generator import kubeconform

    return kubeconform.find_kubeconform(mode)
