"""specedit: one value changes, every other byte of the file stays (comments, anchors,
flow style, quoting, other documents), checked on hand-written and generated files."""

from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generator.specedit import EditError, remove_key, set_value
from generator.yamlio import load_documents

NEW_URL = "hf://Qwen/Qwen2.5-7B-Instruct@d4e5f6"

FILE = """\
# Qwen for chat: a comment at the top.
kind: vllmserve-text   # the runtime
name: qwen
spec:
  url: &url hf://Qwen/Qwen2.5-7B-Instruct@a1b2c3  # pinned
  adapters:
    - name: sql
      url: "hf://org/sql"
    # between the adapters
    - {name: web, url: 'hf://org/web'}
serve: {args: [--max-model-len, "8192"]}
environments:
  staging:
    spec: {url: 'hf://Qwen/Qwen2.5-7B-Instruct@d4e5f6', adapters: [{name: sql, url: "hf://org/sql-v2"}]}
  prod:
    spec:
      url: hf://Qwen/Qwen2.5-7B-Instruct@a1b2c3   # what prod runs
    # trailing comment of prod
---
# a second document
kind: kubeai-text
name: other
spec: {url: "hf://x/y"}
environments:
  prod:
...
"""


def changed_hunks(old: str, new: str) -> list[tuple[str, str]]:
    """(old text, new text) of every region that differs, at character level."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [
        (old[i1:i2], new[j1:j2]) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"
    ]


def data(text: str) -> list[object]:
    return [doc.data for doc in load_documents(text)]


def test_a_scalar_in_a_block_mapping_changes_alone() -> None:
    new = set_value(FILE, 0, ("environments", "prod", "spec", "url"), NEW_URL)
    assert new == FILE.replace("@a1b2c3   # what prod runs", "@d4e5f6   # what prod runs")


TABBED = "kind: vllmserve-text\t# tab, comment\nname:\tqwen\nspec:\n  url: hf://a/b@1\t\n"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "url"), "hf://a/b@2", TABBED.replace("@1\t", "@2\t")),
        (("name",), "other", TABBED.replace("\tqwen", "\tother")),
        (("spec", "image"), "vllm:1", TABBED + "  image: vllm:1\n"),
    ],
)
def test_tabs_between_tokens_are_kept_and_do_not_stop_an_edit(
    path: tuple[str, ...], value: str, expected: str
) -> None:
    """YAML lets a tab separate tokens on a line; the fast reader takes such a file and
    ruamel's round-trip scanner stops at it. The edit goes through, every tab stays."""
    assert set_value(TABBED, 0, path, value) == expected


def test_a_tab_that_indents_stays_refused() -> None:
    with pytest.raises(EditError, match=r"^2:1: .*tabs cannot indent YAML"):
        set_value("a:\n\tb: 1\n", 0, ("a",), 2)


def test_a_quoted_scalar_in_flow_style_keeps_its_quotes() -> None:
    new = set_value(FILE, 0, ("environments", "staging", "spec", "url"), "hf://q/r@zzz")
    assert new == FILE.replace(
        "{url: 'hf://Qwen/Qwen2.5-7B-Instruct@d4e5f6',", "{url: 'hf://q/r@zzz',"
    )


def test_an_anchored_scalar_keeps_its_anchor() -> None:
    new = set_value(FILE, 0, ("spec", "url"), NEW_URL)
    assert "  url: &url hf://Qwen/Qwen2.5-7B-Instruct@d4e5f6  # pinned\n" in new
    assert changed_hunks(FILE, new) == changed_hunks(
        "url: &url hf://Qwen/Qwen2.5-7B-Instruct@a1b2c3", "url: &url " + NEW_URL
    )


def test_lists_of_the_same_length_change_item_by_item() -> None:
    adapters = [{"name": "sql", "url": "hf://org/sql-v3"}, {"name": "web", "url": "hf://org/web"}]
    new = set_value(FILE, 0, ("spec", "adapters"), adapters)
    assert new == FILE.replace('url: "hf://org/sql"', 'url: "hf://org/sql-v3"')


def test_mapping_items_in_another_key_order_change_in_place() -> None:
    adapters = [{"url": "hf://org/sql", "name": "sql"}, {"url": "hf://org/web-v2", "name": "web"}]
    new = set_value(FILE, 0, ("spec", "adapters"), adapters)
    assert new == FILE.replace("url: 'hf://org/web'", "url: 'hf://org/web-v2'")


def test_a_longer_list_replaces_the_block_and_keeps_what_follows() -> None:
    adapters = [{"name": "sql", "url": "hf://org/sql"}]
    new = set_value(FILE, 0, ("environments", "prod", "spec", "adapters"), adapters)
    added = "      adapters:\n        - name: sql\n          url: hf://org/sql\n"
    assert new == FILE.replace("# what prod runs\n", "# what prod runs\n" + added)
    assert data(new)[0]["environments"]["prod"]["spec"]["adapters"] == adapters  # type: ignore[index]


def test_missing_keys_are_created_in_the_mappings_style() -> None:
    new = set_value(FILE, 1, ("environments", "prod", "spec", "url"), NEW_URL)
    assert new == FILE.replace("  prod:\n...", '  prod: {spec: {url: "' + NEW_URL + '"}}\n...')
    new = set_value(FILE, 1, ("environments", "dev", "spec", "url"), NEW_URL)
    assert new == FILE.replace(
        "  prod:\n...", "  prod:\n  dev:\n    spec:\n      url: " + NEW_URL + "\n..."
    )


def test_windows_line_endings_are_kept() -> None:
    text = FILE.replace("\n", "\r\n")
    new = set_value(text, 1, ("environments", "dev", "spec", "url"), NEW_URL)
    assert "\n" not in new.replace("\r\n", "")
    assert new == text.replace(
        "  prod:\r\n...", "  prod:\r\n  dev:\r\n    spec:\r\n      url: " + NEW_URL + "\r\n..."
    )
    removed = remove_key(text, 0, ("environments", "prod", "spec", "url"))
    assert "    spec: {}\r\n    # trailing comment of prod\r\n" in removed


def test_an_aliased_node_is_refused_with_its_anchor() -> None:
    text = "spec: &s {url: hf://a/b}\nenvironments:\n  prod: {spec: *s}\n"
    with pytest.raises(EditError) as caught:
        set_value(text, 0, ("environments", "prod", "spec", "url"), NEW_URL)
    assert caught.value.message == (
        "environments.prod.spec is shared through the YAML anchor &s: changing it would "
        "change every alias of it too; edit it by hand"
    )


def test_removing_a_key_removes_its_lines_only() -> None:
    new = remove_key(FILE, 0, ("environments", "prod", "spec", "url"))
    assert new == FILE.replace(
        "    spec:\n      url: hf://Qwen/Qwen2.5-7B-Instruct@a1b2c3   # what prod runs\n",
        "    spec: {}\n",
    )
    flow = remove_key(FILE, 0, ("environments", "staging", "spec", "url"))
    assert '    spec: {adapters: [{name: sql, url: "hf://org/sql-v2"}]}\n' in flow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A comment between the key and its only entry stays, on its own line.
        (
            "spec:\n  # pinned older image in prod\n  image: vllm/vllm-openai:v0.32.0\nx: 1\n",
            "spec: {}\n  # pinned older image in prod\nx: 1\n",
        ),
        # A comment on the key's own line stays there.
        (
            "spec:  # prod only\n  image: vllm/vllm-openai:v0.32.0\nx: 1\n",
            "spec: {}  # prod only\nx: 1\n",
        ),
        # No newline at the end of the file: the last character is not lost.
        ("x: 1\nspec:\n  image: vllm/vllm-openai:v0.32.0", "x: 1\nspec: {}\n"),
    ],
)
def test_emptying_a_block_mapping_keeps_comments_and_the_last_character(
    text: str, expected: str
) -> None:
    """Both were refused as changing other values ({} landed inside the comment, or the
    file's last character went)."""
    assert remove_key(text, 0, ("spec", "image")) == expected


# --- generated formatting variants ----------------------------------------------------

URLS = st.sampled_from(
    ["hf://Qwen/Qwen2.5-7B-Instruct@a1b2c3", "hf://org/m", "s3://bucket/path/model"]
)


@st.composite
def spec_files(draw: st.DrawFn) -> tuple[str, int, bool]:
    """A spec file in one of many layouts; returns (text, document index, has prod url)."""
    indent = " " * draw(st.sampled_from([2, 4]))
    quote = draw(st.sampled_from(["", "'", '"']))
    url = draw(URLS)
    comment = draw(st.sampled_from(["", "  # pinned", "    #c"]))
    prod = draw(st.sampled_from(["block", "flow", "absent", "empty", "serve-only"]))
    i1, i2, i3 = indent, indent * 2, indent * 3
    before = draw(
        st.sampled_from(["", "kind: kubeai-text\nname: first\nspec: {url: 'hf://a/b'}\n---\n"])
    )
    lines = [
        draw(st.sampled_from(["", "# header\n"] + ([] if before else ["---\n"]))),
        "kind: vllmserve-text\nname: m\nspec:\n",
        f"{i1}url: &base {quote}{url}{quote}{comment}\n",
        f'{i1}adapters: [{{name: a, url: "hf://o/a"}}]\n',
        "environments:\n",
        f"{i1}staging:\n{i2}serve: {{replicas: 1}}\n",
    ]
    if prod == "block":
        lines.append(f"{i1}prod:\n{i2}spec:\n{i3}url: {quote}{url}{quote}{comment}\n")
    elif prod == "flow":
        lines.append(f"{i1}prod: {{spec: {{url: {quote or chr(34)}{url}{quote or chr(34)}}}}}\n")
    elif prod == "empty":
        lines.append(f"{i1}prod:{comment}\n")
    elif prod == "serve-only":
        lines.append(f"{i1}prod:\n{i2}serve: {{replicas: 2}}{comment}\n")
    lines.append(draw(st.sampled_from(["", "# trailing\n"])))
    after = draw(
        st.sampled_from(["", "---\nkind: kubeai-text\nname: last\nspec: {url: 'hf://c/d'}\n"])
    )
    return before + "".join(lines) + after, 1 if before else 0, prod in ("block", "flow")


@settings(max_examples=150, deadline=None, derandomize=True)
@given(spec_files(), st.sampled_from([NEW_URL, "s3://b/p", "hf://org/m@main"]))
def test_promoting_a_url_changes_only_that_value(case: tuple[str, int, bool], url: str) -> None:
    text, index, has_prod_url = case
    path = ("environments", "prod", "spec", "url")
    new = set_value(text, index, path, url)
    expected = data(text)
    target = expected[index]
    assert isinstance(target, dict)
    target.setdefault("environments", {})
    if not isinstance(target["environments"].get("prod"), dict):
        target["environments"]["prod"] = {}
    target["environments"]["prod"].setdefault("spec", {})["url"] = url
    assert data(new) == expected
    matcher = difflib.SequenceMatcher(None, text, new, autojunk=False)
    changed = [(i1, i2) for op, i1, i2, _, _ in matcher.get_opcodes() if op != "equal"]
    if has_prod_url:
        # Only characters inside the old value were touched: the new one is spliced in.
        prod = text.index("prod:")
        start = text.index("url:", prod) + len("url: ")
        end = start + len(text[start:].split("}")[0].split("\n")[0].split(" ")[0])
        assert all(start <= i1 <= i2 <= end for i1, i2 in changed), (changed, start, end)
    else:
        # Pure insertion: nothing of the old text is gone.
        assert all(i1 == i2 for i1, i2 in changed)
    # Comments, the anchor and the other documents are all still there.
    for marker in (
        "# header",
        "# pinned",
        "#c",
        "&base",
        "# trailing",
        "name: first",
        "name: last",
    ):
        assert text.count(marker) == new.count(marker)
