"""The output tree's paths: built and parsed back here, and nowhere else.

    models/<model>/base/<file>              the runtime's objects, one file each
    models/<model>/overlays/<env>/<file>    the environment's kustomization and patches
    clusters/<env>/<file>                   entry point per environment
    flux/<env>/<file>                       GitRepository + Flux Kustomizations
    rbac/<env>/<file>                       read-only RBAC for `servegen status`
    endpoints/<env>.json                    the OpenAI endpoint catalog
    README.md                               an index of the above

generator/layout.py writes the tree with the builders below; publish, status, promote,
immutable and write read trees back with `parse()` and `index_models()`. Model and
environment names are DNS labels (validated before anything is laid out), so a name
never holds a `/` and every path parses back to the record it was built from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

MODELS = "models"
CLUSTERS = "clusters"
FLUX = "flux"
RBAC = "rbac"
ENDPOINTS = "endpoints"
INDEX = "README.md"
BASE = "base"
OVERLAYS = "overlays"
KUSTOMIZATION = "kustomization.yaml"
PATCH_PREFIX = "patch-"  # an overlay file holding JSON patches for the base file it names
DELETE_PREFIX = "delete-"  # an overlay file deleting the base object of the file it names

# Top-level entries of the output folder that servegen owns.
MANAGED = (CLUSTERS, MODELS, ENDPOINTS, FLUX, RBAC, INDEX)
# Folders holding one subfolder per environment.
_ENV_FOLDERS = (CLUSTERS, FLUX, RBAC)

Kind = Literal["base", "overlay", "cluster", "flux", "rbac", "endpoints", "index"]


# --------------------------------------------------------------------------- building


def base_dir(model: str) -> str:
    return f"{MODELS}/{model}/{BASE}"


def overlay_dir(model: str, environment: str) -> str:
    return f"{MODELS}/{model}/{OVERLAYS}/{environment}"


def cluster_dir(environment: str) -> str:
    return f"{CLUSTERS}/{environment}"


def flux_dir(environment: str) -> str:
    return f"{FLUX}/{environment}"


def rbac_dir(environment: str) -> str:
    return f"{RBAC}/{environment}"


def endpoints_file(environment: str) -> str:
    return f"{ENDPOINTS}/{environment}.json"


# Kustomize resolves a resource relative to the kustomization naming it.
BASE_FROM_OVERLAY = f"../../{BASE}"


def overlay_from_cluster(model: str, environment: str) -> str:
    """An overlay as `clusters/<env>/kustomization.yaml` names it."""
    return f"../../{overlay_dir(model, environment)}"


def rbac_from_flux(environment: str) -> str:
    """The RBAC folder as `flux/<env>/kustomization.yaml` names it."""
    return f"../../{rbac_dir(environment)}"


def patch_file(object_file: str) -> str:
    return f"{PATCH_PREFIX}{object_file}"


def delete_file(object_file: str) -> str:
    return f"{DELETE_PREFIX}{object_file}"


# --------------------------------------------------------------------------- parsing


class TreePath(NamedTuple):
    """One file of the output tree. `file` is relative to the folder `kind` names.

    A named tuple rather than a dataclass: a deploy tree holds tens of thousands of
    files, and tuples are the quickest records to make.
    """

    kind: Kind
    model: str | None = None  # base and overlay files
    environment: str | None = None  # every kind but base and index
    file: str = ""  # empty for the catalog and the index, which are files themselves

    @property
    def path(self) -> str:
        """The path relative to the output folder: the inverse of `parse()`."""
        if self.kind == "index":
            return INDEX
        if self.kind == "endpoints":
            return endpoints_file(self._environment)
        if self.kind == "base":
            return f"{base_dir(self._model)}/{self.file}"
        if self.kind == "overlay":
            return f"{overlay_dir(self._model, self._environment)}/{self.file}"
        folders = {"cluster": cluster_dir, "flux": flux_dir, "rbac": rbac_dir}
        return f"{folders[self.kind](self._environment)}/{self.file}"

    @property
    def _model(self) -> str:
        assert self.model is not None, self
        return self.model

    @property
    def _environment(self) -> str:
        assert self.environment is not None, self
        return self.environment


_KINDS: dict[str, Kind] = {CLUSTERS: "cluster", FLUX: "flux", RBAC: "rbac"}


def parse(path: str) -> TreePath | None:
    """What a path of the output tree is; None for anything servegen does not write there."""
    parts = path.split("/")
    if "" in parts:
        return None
    top, count = parts[0], len(parts)
    if top == MODELS:
        if count >= 4 and parts[2] == BASE:
            return _record("base", parts[1], None, "/".join(parts[3:]))
        if count >= 5 and parts[2] == OVERLAYS:
            return _record("overlay", parts[1], parts[3], "/".join(parts[4:]))
        return None
    kind = _KINDS.get(top)
    if kind is not None:
        return _record(kind, None, parts[1], "/".join(parts[2:])) if count >= 3 else None
    if top == ENDPOINTS and count == 2 and parts[1].endswith(".json") and parts[1] != ".json":
        return _record("endpoints", None, parts[1].removesuffix(".json"), "")
    return _record("index", None, None, "") if path == INDEX else None


def _record(kind: Kind, model: str | None, environment: str | None, file: str) -> TreePath:
    # TreePath(...) without its Python-level __new__: this runs for every file of a tree.
    return tuple.__new__(TreePath, (kind, model, environment, file))


def folders_of(paths: Iterable[str]) -> set[str]:
    """Every folder the paths lie in ("a/b/c" lies in "a" and "a/b"). String slicing:
    `Path.parents` per file was most of a watch batch's write."""
    folders: set[str] = set()
    for rel in paths:
        folder = rel.rpartition("/")[0]
        while folder and folder not in folders:
            folders.add(folder)
            folder = folder.rpartition("/")[0]
    return folders


def model_folder(model: str) -> str:
    """`models/<model>/`: what every path in the model's folder starts with."""
    return f"{_MODELS_PREFIX}{model}/"


def model_folder_of(path: str) -> str | None:
    """The model whose folder (`models/<model>/`) holds `path`, from the path's first
    two parts alone: 62,000 paths are grouped by model in about a quarter of the time
    parse() takes."""
    if not path.startswith(_MODELS_PREFIX):
        return None
    end = path.find("/", len(_MODELS_PREFIX))
    return path[len(_MODELS_PREFIX) : end] if end > len(_MODELS_PREFIX) else None


_MODELS_PREFIX = f"{MODELS}/"


def model_of(path: str) -> str | None:
    """The model whose folder holds `path` (its base or an overlay), else None."""
    parsed = parse(path)
    return parsed.model if parsed is not None else None


def in_environment(path: str, environment: str) -> bool:
    """Whether `path` is part of what `environment` needs (shared files are)."""
    parsed = parse(path)
    return parsed is None or parsed.environment in (None, environment)


# --------------------------------------------------------------------------- models


@dataclass
class ModelFiles:
    """One model's files: its base folder, and its overlay folder per environment."""

    base: dict[str, bytes] = field(default_factory=dict)
    overlays: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def object_files(self, environment: str) -> set[str]:
        """The object files `environment` deploys: the base's, plus those only the
        overlay adds, minus those it deletes (as generator/layout.py writes overlays)."""
        overlay = self.overlays.get(environment, {})
        base = {n for n in self.base if n != KUSTOMIZATION}
        added = {
            n
            for n in overlay
            if n != KUSTOMIZATION and not n.startswith((PATCH_PREFIX, DELETE_PREFIX))
        }
        deleted = {n.removeprefix(DELETE_PREFIX) for n in overlay if n.startswith(DELETE_PREFIX)}
        return (base | added) - deleted

    def environment_files(self, environment: str) -> dict[str, bytes]:
        """Every file that makes up the model in `environment`, under base/ and overlay/."""
        return {
            **{f"base/{k}": v for k, v in self.base.items()},
            **{f"overlay/{k}": v for k, v in self.overlays.get(environment, {}).items()},
        }


def index_models(files: Mapping[str, bytes]) -> dict[str, ModelFiles]:
    """The model files of a tree, by model name; every other file is left out."""
    models: dict[str, ModelFiles] = {}
    for path, data in files.items():
        parsed = parse(path)
        if parsed is None or parsed.model is None:
            continue
        entry = models.setdefault(parsed.model, ModelFiles())
        if parsed.environment is None:
            entry.base[parsed.file] = data
        else:
            entry.overlays.setdefault(parsed.environment, {})[parsed.file] = data
    return models


def models_by_environment(files: Iterable[str]) -> dict[str, set[str]]:
    """environment -> models deployed there (models/<name>/overlays/<env>/ exists), from
    the paths of a tree alone."""
    out: dict[str, set[str]] = {}
    for path in files:
        parsed = parse(path)
        if parsed is not None and parsed.model is not None and parsed.environment is not None:
            out.setdefault(parsed.environment, set()).add(parsed.model)
    return out


def deployed_objects(files: Mapping[str, bytes]) -> dict[str, set[str]]:
    """environment -> `<model>/<object file>` of every model object a tree holds."""
    out: dict[str, set[str]] = {}
    for name, model in index_models(files).items():
        for env in model.overlays:
            out.setdefault(env, set()).update(f"{name}/{f}" for f in model.object_files(env))
    return out


def in_flux(path: str) -> bool:
    """Whether `path` lies in the Flux folder (flux/<env>/), by its prefix alone."""
    return path.startswith(FLUX_PREFIX)


FLUX_PREFIX = f"{FLUX}/"


def flux_sources_of(files: Mapping[str, bytes]) -> dict[str, frozenset[tuple[str, str]]]:
    """environment -> (namespace, name) of the GitRepository its flux folder holds: the
    namespace and name its Kustomizations share (generator/flux.py object_names). Only
    that small file is read: the models' Kustomization lists every model. An environment
    whose file names no object, or cannot be read (a deploy branch edited by hand), is
    left out: nothing is known of its sources."""
    from generator.yamlio import YamlSyntaxError, parse_rendered  # only publish reads these

    out: dict[str, set[tuple[str, str]]] = {}
    for path in files:
        if not in_flux(path):  # a tree of thousands of model files
            continue
        where = parse(path)
        if where is None or where.kind != "flux" or not where.file.startswith("gitrepository-"):
            continue
        try:
            documents = parse_rendered(files[path].decode("utf-8"))
        except (UnicodeDecodeError, YamlSyntaxError):
            continue
        for obj in documents:
            meta = obj.get("metadata") if isinstance(obj, dict) else None
            if isinstance(meta, dict):
                found = out.setdefault(where._environment, set())
                found.add((str(meta.get("namespace")), str(meta.get("name"))))
    return {env: frozenset(sources) for env, sources in out.items()}
