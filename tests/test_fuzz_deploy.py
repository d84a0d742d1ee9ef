"""Fuzzing the deploy branch: publish owns it, but anyone with push rights can commit
to it. Whatever a hand-made commit leaves there (files servegen cannot read, objects of
any shape, links, executables, files removed), `servegen publish` either writes the
whole rendering anew or refuses with a message and leaves the branch as it found it:
never an internal error, never a half-written tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator import git
from generator import publish as pub
from generator.pipeline import build
from tests.fuzzing import fuzzed
from tests.gitutil import commit_tree_edits, sh
from tests.publishutil import without_metadata
from tests.specrepo import make_spec_repo, publish, tip

pytestmark = pytest.mark.usefixtures("isolated_git")

_MODELS = ["tinyllama-chat", "qwen-chat", "gone-model"]
_ENVS = ["dev", "prod", "staging"]
_PATHS = st.one_of(
    st.sampled_from(
        [
            pub.METADATA_FILE,
            "README.md",
            "endpoints/dev.json",
            "clusters/dev/kustomization.yaml",
            "flux/dev/kustomization.yaml",
            "flux/dev/gitrepository-servegen-dev.yaml",
            "flux/prod/gitrepository-servegen-prod.yaml",
            "flux/dev/kustomization-servegen-dev.yaml",
        ]
    ),
    st.builds(
        "models/{}/{}/{}".format,
        st.sampled_from(_MODELS),
        st.sampled_from(["base", *[f"overlays/{env}" for env in _ENVS]]),
        st.sampled_from(["kustomization.yaml", "deployment-x.yaml", "model-x.yaml", "notes"]),
    ),
    st.builds(
        "flux/{}/{}".format,
        st.sampled_from(_ENVS),
        st.sampled_from(["gitrepository-a.yaml", "x.yaml"]),
    ),
)
_CONTENT = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"",
            b"\xff\xfe not UTF-8\n",
            b"kind: [unclosed\n",
            b"[" * 50_000,
            b"{" * 50_000,
            b"a: &a [x]\nb: *a\n",
            b"!!python/object:os.system x\n",
            b"kind: GitRepository\nmetadata: 5\n",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: [1]}\n",
            b'{"drySha": "' + b"a" * 40 + b'"}',
            b'{"drySha": 5}',
            b"resources: [../../../../etc/passwd, /abs, x.yaml]\n",
            b"---\n---\n...\n",
        ]
    ),
    st.text(max_size=60).map(str.encode),
)
_EDIT = st.one_of(
    st.none(),  # the file removed (when it is there)
    st.tuples(st.sampled_from(["100644", "100644", "100755", "120000", "160000"]), _CONTENT),
)


@pytest.fixture
def published(
    tmp_path: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str, Mapping[str, bytes]]:
    """The examples published once: the repository, its deploy commit and what the
    examples render (each example starts from that commit again)."""
    work = make_spec_repo(tmp_path)
    assert publish(work, crds_dir, capsys)[0] == 0
    return work, sh(work, "rev-parse", "deploy"), build(work, crds=[crds_dir]).files


@fuzzed(40)
@given(edits=st.dictionaries(_PATHS, _EDIT, min_size=1, max_size=4))
def test_publish_over_any_hand_made_deploy_commit_rewrites_it_or_refuses_cleanly(
    published: tuple[Path, str, Mapping[str, bytes]],
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
    edits: dict[str, tuple[str, bytes] | None],
) -> None:
    work, pristine, rendered = published
    files = git.read_tree_files(git.open_repo(work), pristine)
    present = {path: edit for path, edit in edits.items() if edit is not None or path in files}
    if not present:
        return  # only removals of files the tree does not have: nothing to change
    hand_made = commit_tree_edits(work, pristine, present, "Edited by hand")
    sh(work, "update-ref", "refs/heads/deploy", hand_made)
    code, _, err = publish(work, crds_dir, capsys)
    assert "internal error" not in err and "Traceback" not in err, err
    if code == 0:  # the rendering, and the source it came from, for status and promote
        written = git.read_tree_files(git.open_repo(work), "deploy")
        assert without_metadata(written) == rendered
        assert pub.recorded_source(written) == sh(work, "rev-parse", "HEAD")
    else:
        assert code == 1 and err.startswith("servegen: error: "), err
        assert tip(work) == hand_made  # refused: the branch as it was found
