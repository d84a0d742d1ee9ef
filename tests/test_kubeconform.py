"""Tests for generator.kubeconform: the second opinion from a kubeconform binary."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from generator.check import ManifestChecker, ObjectProblem
from generator.errors import ServegenError
from generator.kubeconform import _pointer_to_path, kubeconform_command, parse_kubeconform_output
from tests.objects import deployment, kubeai_model, service

K8S = "1.33"


# What `kubeconform -strict -output json` prints for one invalid resource.
RECORDED_KUBECONFORM_OUTPUT = {
    "resources": [
        {
            "filename": "stdin",
            "kind": "Deployment",
            "name": "llama",
            "version": "apps/v1",
            "status": "statusInvalid",
            "msg": "problem validating schema. Check JSON formatting: jsonschema: "
            "'/spec/template/spec/containers/0/ports/0/containerPort' does not validate",
            "validationErrors": [
                {
                    "path": "/spec/template/spec/containers/0/ports/0/containerPort",
                    "msg": "expected integer, but got string",
                }
            ],
        },
        {
            "filename": "stdin",
            "kind": "Model",
            "name": "llama",
            "version": "kubeai.org/v1",
            "status": "statusError",
            "msg": "could not find schema for Model",
        },
    ]
}

FAKE_KUBECONFORM = """\
#!{python}
import json, os, sys
record = {{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}
location = sys.argv[sys.argv.index("-schema-location", sys.argv.index("-schema-location") + 1) + 1]
root = location.split("{{{{")[0]
record["schemas"] = sorted(
    os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
)
with open({record!r}, "w") as out:
    json.dump(record, out)
print({output!r})
sys.exit(1)
"""


@pytest.fixture()
def fake_kubeconform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real executable named kubeconform, first on PATH, that records how it was run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record.json"
    script = bin_dir / "kubeconform"
    script.write_text(
        FAKE_KUBECONFORM.format(
            python=sys.executable,
            record=str(record),
            output=json.dumps(RECORDED_KUBECONFORM_OUTPUT),
        )
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return record


def test_kubeconform_command_line() -> None:
    command = kubeconform_command("/bin/kubeconform", "v1.33.2", Path("/tmp/schemas"))
    assert command == [
        "/bin/kubeconform",
        "-strict",
        "-output",
        "json",
        "-kubernetes-version",
        "1.33.2",
        "-schema-location",
        "default",
        "-schema-location",
        "/tmp/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json",
        "-",
    ]


def test_kubeconform_output_is_parsed_into_problems() -> None:
    problems = parse_kubeconform_output(json.dumps(RECORDED_KUBECONFORM_OUTPUT))
    assert problems == [
        ObjectProblem(
            "apps/v1",
            "Deployment",
            "llama",
            "spec.template.spec.containers[0].ports[0].containerPort",
            "kubeconform: expected integer, but got string",
        ),
        ObjectProblem(
            "kubeai.org/v1", "Model", "llama", "", "kubeconform: could not find schema for Model"
        ),
    ]
    assert parse_kubeconform_output('{"resources": []}') == []
    # A map key of digits that int() cannot read ("²") stays a key.
    assert _pointer_to_path("/metadata/labels/²/x") == 'metadata.labels["²"].x'
    with pytest.raises(ServegenError, match="not its JSON"):
        parse_kubeconform_output("panic: runtime error")


def test_kubeconform_runs_as_second_opinion_on_valid_objects(
    fake_kubeconform: Path, crds_dir: Path
) -> None:
    broken = service("broken")
    broken["spec"]["bogus"] = 1
    validator = ManifestChecker(K8S, [crds_dir], kubeconform="auto")
    result = validator.check([deployment(), kubeai_model(), broken])
    record = json.loads(fake_kubeconform.read_text())
    assert record["argv"][:4] == ["-strict", "-output", "json", "-kubernetes-version"]
    # Only the objects that passed our own check are sent, as a stream of documents.
    sent = [json.loads(doc) for doc in record["stdin"].split("---\n") if doc.strip()]
    assert [o["kind"] for o in sent] == ["Deployment", "Model"]
    assert "kubeai.org/model_v1.json" in record["schemas"]
    assert "serving.kserve.io/inferenceservice_v1beta1.json" in record["schemas"]
    assert [(p.name, p.path) for p in result.problems] == [
        ("broken", "spec.bogus"),
        ("llama", "spec.template.spec.containers[0].ports[0].containerPort"),
        ("llama", ""),
    ]


def test_kubeconform_never_does_not_run_it(fake_kubeconform: Path) -> None:
    ManifestChecker(K8S, kubeconform="never").check([deployment()])
    assert not fake_kubeconform.exists()


def test_kubeconform_always_without_binary_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServegenError, match="no kubeconform binary"):
        ManifestChecker(K8S, kubeconform="always")
    assert ManifestChecker(K8S, kubeconform="auto").check([deployment()]).problems == ()
    with pytest.raises(ServegenError, match="invalid kubeconform setting"):
        ManifestChecker(K8S, kubeconform="sometimes")
