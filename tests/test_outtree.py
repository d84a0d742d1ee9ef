"""The output tree's paths: every path servegen writes parses back to what it was built
from, anything else parses to None, and no other module spells the layout itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator import outtree
from generator.outtree import TreePath, in_environment, index_models, parse
from generator.pipeline import build
from tests.conftest import EXAMPLES, REPO_ROOT

# Model and environment names are DNS labels (generator/fields.py, generator/config.py).
labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")
files = st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,30}\Z").filter(lambda f: f != outtree.INDEX)
nested = st.lists(files, min_size=1, max_size=3).map("/".join)


FOLDER_KINDS: tuple[outtree.Kind, ...] = ("base", "overlay", "cluster", "flux", "rbac", "endpoints")


@st.composite
def tree_paths(draw: st.DrawFn) -> TreePath:
    kind = draw(st.sampled_from(FOLDER_KINDS))
    model = draw(labels) if kind in ("base", "overlay") else None
    environment = None if kind == "base" else draw(labels)
    file = "" if kind == "endpoints" else draw(nested)
    return TreePath(kind, model, environment, file)


@given(tree_paths())
def test_every_built_path_parses_back_to_its_record(record: TreePath) -> None:
    assert parse(record.path) == record


@given(tree_paths())
def test_a_model_folder_is_told_from_the_path_as_parse_tells_it(record: TreePath) -> None:
    assert outtree.model_folder_of(record.path) == record.model
    if record.model is not None:  # and every path of the model starts with its folder
        assert record.path.startswith(outtree.model_folder(record.model))


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("models/m/x", "m"),
        ("models/m/", "m"),
        ("models/", None),
        ("models//x", None),
        ("models", None),
        ("modelsx/m/x", None),
        ("README.md", None),
        ("m/models/x/y", None),
    ],
)
def test_a_model_folder_is_the_second_part_below_models(path: str, model: str | None) -> None:
    assert outtree.model_folder_of(path) == model


def test_every_file_of_a_build_parses_back_to_its_path(crds_dir: Path) -> None:
    result = build(EXAMPLES, crds=[crds_dir])
    parsed = {path: parse(path) for path in result.files}
    assert None not in parsed.values()
    assert all(record.path == path for path, record in parsed.items() if record is not None)
    kinds = {record.kind for record in parsed.values() if record is not None}
    assert kinds == {"base", "overlay", "cluster", "flux", "endpoints", "index"}


def test_the_builders_write_the_documented_layout() -> None:
    assert (
        TreePath("base", "m", None, "deployment-m.yaml").path == "models/m/base/deployment-m.yaml"
    )
    assert TreePath("overlay", "m", "prod", "kustomization.yaml").path == (
        "models/m/overlays/prod/kustomization.yaml"
    )
    assert TreePath("cluster", None, "prod", "kustomization.yaml").path == (
        "clusters/prod/kustomization.yaml"
    )
    assert TreePath("flux", None, "dev", "x.yaml").path == "flux/dev/x.yaml"
    assert TreePath("rbac", None, "dev", "x.yaml").path == "rbac/dev/x.yaml"
    assert TreePath("endpoints", None, "dev").path == "endpoints/dev.json"
    assert TreePath("index").path == "README.md"
    assert outtree.overlay_from_cluster("m", "prod") == "../../models/m/overlays/prod"


@pytest.mark.parametrize(
    "path",
    [
        "",
        ".servegen-manifest",
        "hydrator.metadata",
        "README.md/x",
        "notes/README.md",
        "models",
        "models/m",
        "models/m/base",
        "models/m/overlays/prod",
        "models/m/other/x.yaml",
        "models//base/x.yaml",
        "models/m/base/",
        "/models/m/base/x.yaml",
        "clusters/prod",
        "clusters//kustomization.yaml",
        "flux/prod",
        "endpoints/prod.yaml",
        "endpoints/.json",
        "endpoints/prod/x.json",
        "other/prod/x.yaml",
    ],
)
def test_a_path_servegen_does_not_write_parses_to_none(path: str) -> None:
    assert parse(path) is None


def test_in_environment_keeps_shared_files_and_that_environment_only() -> None:
    inside = [
        "models/m/base/x.yaml",
        "models/m/overlays/prod/kustomization.yaml",
        "clusters/prod/kustomization.yaml",
        "flux/prod/x.yaml",
        "rbac/prod/x.yaml",
        "endpoints/prod.json",
        "README.md",
    ]
    outside = [p.replace("prod", "dev") for p in inside if "prod" in p]
    assert all(in_environment(p, "prod") for p in inside)
    assert not any(in_environment(p, "prod") for p in outside)


def test_index_reads_base_overlays_and_object_files() -> None:
    tree = {
        "models/m/base/kustomization.yaml": b"k",
        "models/m/base/deployment-m.yaml": b"d",
        "models/m/base/service-m.yaml": b"s",
        "models/m/overlays/prod/kustomization.yaml": b"kp",
        "models/m/overlays/prod/patch-deployment-m.yaml": b"p",
        "models/m/overlays/prod/delete-service-m.yaml": b"x",
        "models/m/overlays/prod/hpa-m.yaml": b"h",
        "models/m/overlays/dev/kustomization.yaml": b"kd",
        "clusters/prod/kustomization.yaml": b"c",
    }
    (name, model), *others = index_models(tree).items()
    assert name == "m" and not others
    assert model.object_files("prod") == {"deployment-m.yaml", "hpa-m.yaml"}
    assert model.object_files("dev") == {"deployment-m.yaml", "service-m.yaml"}
    assert outtree.models_by_environment(tree) == {"prod": {"m"}, "dev": {"m"}}
    assert outtree.deployed_objects(tree)["prod"] == {"m/deployment-m.yaml", "m/hpa-m.yaml"}
    assert model.environment_files("dev") == {
        "base/kustomization.yaml": b"k",
        "base/deployment-m.yaml": b"d",
        "base/service-m.yaml": b"s",
        "overlay/kustomization.yaml": b"kd",
    }


# --------------------------------------------------------------------------- one place

# Path literals of the layout: a folder name at the start of a path, or anywhere for
# the names that are only ever path steps.
_LITERAL = re.compile(
    r"^(\./|\.\./\.\./)?(models|clusters|flux|rbac|endpoints)/|/?overlays\b|kustomization\.yaml"
)
# Compared with a path step (`parts[0] == "models"`): the layout parsed by hand.
_STEPS = {outtree.MODELS, outtree.CLUSTERS, outtree.FLUX, outtree.RBAC, outtree.ENDPOINTS}
_STEPS |= {outtree.BASE, outtree.OVERLAYS}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _layout_literals(source: str) -> list[str]:
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and _LITERAL.search(node.value)
        ):
            found.append(f"{node.lineno}: {node.value!r}")
        if isinstance(node, ast.Compare):
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and part.value in _STEPS:
                    found.append(f"{part.lineno}: compared with {part.value!r}")
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = {str(e.value) for e in node.elts if isinstance(e, ast.Constant)} & _STEPS
            if len(names) > 1:  # the top-level folders listed again
                found.append(f"{node.lineno}: lists {sorted(names)}")
    return found


def test_the_scan_finds_a_hand_written_layout() -> None:
    source = (
        '"""models/<name>/overlays/<env> in a docstring is documentation."""\n'
        'def f(parts, m):\n    return parts[0] != "models", f"models/{m}/base", "x/overlays/y"\n'
        'OWNED = ("clusters", "flux", "README.md")\n'
    )
    assert sorted(_layout_literals(source)) == [
        "3: 'models/'",
        "3: 'x/overlays/y'",
        "3: compared with 'models'",
        "4: lists ['clusters', 'flux']",
    ]


def test_no_module_but_outtree_spells_the_layout() -> None:
    found = {
        str(path.relative_to(REPO_ROOT)): literals
        for path in sorted((REPO_ROOT / "generator").rglob("*.py"))
        if path.name != "outtree.py"
        for literals in [_layout_literals(path.read_text(encoding="utf-8"))]
        if literals
    }
    assert found == {}
