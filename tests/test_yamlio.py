"""The YAML layer: positions, strict reading, bounded aliases, deterministic writing."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml.error import YAMLError

from generator.yamlio import (
    MAX_EXPANDED_NODES,
    Document,
    YamlSyntaxError,
    dump,
    dump_documents,
    format_path,
    load_documents,
    parse_rendered,
)
from tests.yamlbombs import bomb

SPEC = textwrap.dedent(
    """\
    # a comment first
    kind: kubeai-text
    name: tinyllama-chat
    labels: {team: nlp, tier: "gold"}
    spec:
      url: hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0
      adapters:
        - name: colorist
          url: hf://jashing/tinyllama-colorist-lora
        - {name: sql, url: "s3://models/sql"}
    serve:
      args: [--max-model-len=2048, --enable-prefix-caching]
      envs:
        "A.B": "1"
    """
)


@pytest.fixture(scope="module")
def doc() -> Document:
    [document] = load_documents(SPEC)
    return document


# --- positions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value_at", "key_at"),
    [
        (("kind",), (2, 7), (2, 1)),
        (("name",), (3, 7), (3, 1)),
        (("labels",), (4, 9), (4, 1)),
        (("labels", "team"), (4, 16), (4, 10)),
        (("labels", "tier"), (4, 27), (4, 21)),
        (("spec",), (6, 3), (5, 1)),
        (("spec", "url"), (6, 8), (6, 3)),
        (("spec", "adapters"), (8, 5), (7, 3)),
        (("spec", "adapters", 0, "name"), (8, 13), (8, 7)),
        (("spec", "adapters", 1, "url"), (10, 24), (10, 19)),
        (("serve", "args", 1), (12, 32), (12, 32)),
        (("serve", "envs", "A.B"), (14, 12), (14, 5)),
    ],
)
def test_positions_of_values_and_keys(
    doc: Document,
    path: tuple[str | int, ...],
    value_at: tuple[int, int],
    key_at: tuple[int, int],
) -> None:
    assert doc.position(path) == value_at
    assert doc.position(path, key=True) == key_at


def test_position_of_the_root_is_the_first_node(doc: Document) -> None:
    assert doc.position(()) == (2, 1)
    assert doc.line == 2


def test_position_of_a_missing_path_is_its_deepest_parent(doc: Document) -> None:
    assert doc.position(("spec", "engine")) == doc.position(("spec",))
    assert doc.position(("spec", "adapters", 7, "name")) == doc.position(("spec", "adapters"))
    assert doc.position(("nope", "deeper")) == doc.position(())
    # A step that does not fit the node (an index into a mapping) stops there too.
    assert doc.position(("labels", 0)) == doc.position(("labels",))
    assert doc.position(("spec", "adapters", "0")) == doc.position(("spec", "adapters"))


def test_positions_in_later_documents_are_absolute() -> None:
    docs = load_documents("a: 1\n---\n# two\nb:\n  c: 2\n")
    assert [d.index for d in docs] == [0, 1]
    assert docs[1].position(("b", "c")) == (5, 6)
    assert docs[1].position(("b", "c"), key=True) == (5, 3)
    assert docs[1].line == 4


def test_columns_count_characters() -> None:
    [document] = load_documents('name: "naïve café"\nnext: {ünï: 1, b: 2}\n')
    assert document.position(("next", "b")) == (2, 19)
    assert document.position(("next", "b"), key=True) == (2, 16)


def test_has(doc: Document) -> None:
    assert doc.has(())
    assert doc.has(("spec", "adapters", 1, "url"))
    assert doc.has(("serve", "envs", "A.B"))
    assert not doc.has(("spec", "adapters", 2))
    assert not doc.has(("spec", "adapters", -1))
    assert not doc.has(("spec", "engine"))
    assert not doc.has(("spec", "engine", "deeper"))
    assert not doc.has(("labels", 0))


def test_data_is_plain_and_keeps_key_order(doc: Document) -> None:
    assert list(doc.data) == ["kind", "name", "labels", "spec", "serve"]
    assert doc.data["spec"]["adapters"][1] == {"name": "sql", "url": "s3://models/sql"}
    assert type(doc.data) is dict
    assert type(doc.data["spec"]["adapters"]) is list


@pytest.mark.parametrize(
    "text",
    ["0x 1F", "0x-1", "0o+7", "0x1_F", "0o1_7", "0x\u0661", "0X1F", ".iNf", "+.iNF", ".nAn"],
)
def test_scalars_the_core_schema_reads_as_text_stay_text(text: str) -> None:
    """Only the core schema's own spellings are numbers (0o[0-7]+, 0x[0-9a-fA-F]+,
    [-+]?.inf/.Inf/.INF, .nan/.NaN/.NAN): an editor's YAML 1.2 reads the rest as text, and
    a value it reads as text must not be read here as a number (`processors: 0x 2`)."""
    [document] = load_documents(f"a: {text}\n")
    assert document.data == {"a": text}


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("spec: {url: hf://org/model}\n", {"spec": {"url": "hf://org/model"}}),
        ("a: [hf://x, s3://b/c]\n", {"a": ["hf://x", "s3://b/c"]}),
        ("v: {image: vllm/vllm-openai:v0.10.2}\n", {"v": {"image": "vllm/vllm-openai:v0.10.2"}}),
        ("k: {endpoint: http://kubeai.kubeai.svc:80/openai/v1}\n",
         {"k": {"endpoint": "http://kubeai.kubeai.svc:80/openai/v1"}}),
        ("a: {b: 'x'}\nc: {d: e:f}\n", {"a": {"b": "x"}, "c": {"d": "e:f"}}),
    ],
)  # fmt: skip
def test_a_colon_inside_a_flow_scalar_is_yaml_12(text: str, data: Any) -> None:
    """YAML 1.2 allows ':' inside a plain scalar of a flow collection (not followed by a
    blank); the C parser servegen reads with refuses it, the README's examples use it."""
    [document] = load_documents(text)
    assert document.data == data


def test_positions_inside_a_flow_mapping_with_urls() -> None:
    document = load_documents("kind: x\nspec: {url: hf://org/m, bad: 1}\n")[0]
    assert document.position(["spec", "bad"]) == (2, 30)
    assert document.position(["spec", "bad"], key=True) == (2, 25)


def test_errors_after_a_flow_url_are_still_found() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_documents("a: {url: hf://x}\nb: {url: hf://y}\nb: 1\n")
    assert (caught.value.message, caught.value.line, caught.value.col) == (
        "found duplicate key 'b'",
        3,
        1,
    )


def test_yaml_12_scalars() -> None:
    """YAML 1.2: `yes`/`no`/`on`/`off` are strings, not booleans; octal needs 0o."""
    [document] = load_documents("a: yes\nb: off\nc: true\nd: 012\ne: 0o12\nf: ~\ng: 1e3\n")
    assert document.data == {
        "a": "yes",
        "b": "off",
        "c": True,
        "d": 12,
        "e": 10,
        "f": None,
        "g": 1000.0,
    }


# --- strict reading -----------------------------------------------------------------------


def test_empty_streams_have_no_documents() -> None:
    assert load_documents("") == []
    assert load_documents("# only a comment\n") == []


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_documents("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert (caught.value.line, caught.value.col) == (4, 3)
    assert "duplicate key" in caught.value.message


def test_syntax_errors_have_positions() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_documents("a: 1\nb: [1, 2\nc: 3\n")
    assert caught.value.line >= 2 and caught.value.col >= 1
    assert "\n" not in caught.value.message


def test_python_tags_are_not_constructed() -> None:
    with pytest.raises(YamlSyntaxError):
        load_documents("a: !!python/object/apply:os.system [echo hi]\n")


def test_aliases_within_the_limit_are_expanded() -> None:
    [document] = load_documents("base: &b {cpu: 1}\nprod: *b\nlist: [*b, *b]\n")
    assert document.data["prod"] == {"cpu": 1}
    assert document.data["list"] == [{"cpu": 1}, {"cpu": 1}]


def test_alias_bomb_is_refused_quickly_with_a_position() -> None:
    text = bomb(9, 9)  # 9**9 = 387 million strings once expanded
    with pytest.raises(YamlSyntaxError) as caught:
        load_documents(text)  # time to refuse: bench/bench_limits.py
    assert "aliases expand to too many nodes" in caught.value.message
    assert str(MAX_EXPANDED_NODES) in caught.value.message
    assert 1 <= caught.value.line <= 9 and caught.value.col >= 1


def test_alias_limit_boundary() -> None:
    """5 levels of 9 (about 66 thousand nodes) pass; one level more does not."""
    [document] = load_documents(bomb(5, 9))
    assert len(document.data["l4"]) == 9
    with pytest.raises(YamlSyntaxError):
        load_documents(bomb(6, 9))


def test_a_big_document_without_aliases_is_not_refused() -> None:
    text = "items:\n" + "".join(f"  - {{n: {i}}}\n" for i in range(20_000))
    [document] = load_documents(text)
    assert len(document.data["items"]) == 20_000


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_documents("a: " + "[" * 300 + "]" * 300 + "\n")
    assert "nested too deeply" in caught.value.message
    # The limit that applies is a depth, not the node count of the alias limit.
    assert str(MAX_EXPANDED_NODES) not in caught.value.message
    assert caught.value.line == 1


def test_deep_block_nesting_is_refused() -> None:
    text = "".join("  " * depth + "k:\n" for depth in range(400)) + "  " * 400 + "v\n"
    with pytest.raises(YamlSyntaxError) as caught:
        load_documents(text)
    assert "nested too deeply" in caught.value.message


def test_moderate_nesting_is_fine() -> None:
    [document] = load_documents("a: " + "[" * 100 + "1" + "]" * 100 + "\n")
    value: Any = document.data["a"]
    for _ in range(100):
        value = value[0]
    assert value == 1


def test_very_deep_nesting_is_refused_without_crashing() -> None:
    """A 100 KB file of brackets must be a diagnostic, not a crash of the interpreter."""
    code = textwrap.dedent(
        """
        from generator.yamlio import YamlSyntaxError, load_documents
        try:
            load_documents("a: " + "[" * 50_000 + "]" * 50_000 + "\\n")
        except YamlSyntaxError as exc:
            print("refused", exc.line, exc.col, exc.message)
        else:
            print("accepted")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    assert done.stdout.startswith("refused 1 "), done.stdout
    assert "nested too deeply" in done.stdout


# --- format_path --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("name",), "name"),
        (("spec", "adapters", 0, "name"), "spec.adapters[0].name"),
        ((0,), "[0]"),
        ((0, "a"), "[0].a"),
        (("serve", "envs", "A.B"), 'serve.envs["A.B"]'),
        (("labels", "app.kubernetes.io/name"), 'labels["app.kubernetes.io/name"]'),
        (("labels", "-team"), 'labels["-team"]'),
        (("profiles", "gpu-l4", "resources"), "profiles.gpu-l4.resources"),
        (("ports", "8080"), 'ports["8080"]'),
        (("envs", "MAX JOBS"), 'envs["MAX JOBS"]'),
        (("_private",), "_private"),
        (("",), '[""]'),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


def test_format_path_escapes_quotes_in_keys() -> None:
    """A key holding a quote or backslash must stay unambiguous: JSON string escaping."""
    assert format_path(("labels", 'say "hi"')) == 'labels["say \\"hi\\""]'
    assert format_path(("labels", "a\\b")) == 'labels["a\\\\b"]'


# --- writing ------------------------------------------------------------------------------

OBJECT = {
    "apiVersion": "kubeai.org/v1",
    "kind": "Model",
    "metadata": {"name": "tinyllama-chat", "labels": {"z": "1", "a": "2"}},
    "spec": {
        "url": "hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        "args": ["--max-model-len=2048", "x" * 300],
        "files": [{"path": "/config/prompt.txt", "content": "line one\nline two\n"}],
        "minReplicas": 0,
        "empty": {},
        "none": None,
    },
}


def test_dump_is_deterministic() -> None:
    first = dump_documents([OBJECT, OBJECT])
    again = dump_documents([OBJECT, OBJECT])
    assert first == again
    rebuilt = {key: OBJECT[key] for key in OBJECT}  # an equal but distinct object
    assert dump(rebuilt) == dump(OBJECT)


def test_dump_keeps_key_order() -> None:
    text = dump(OBJECT)
    top = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert top == ["apiVersion", "kind", "metadata", "spec"]
    assert text.index('z: "1"') < text.index('a: "2"')
    assert dump({"b": 1, "a": 2}) == "b: 1\na: 2\n"


def test_dump_never_folds_long_strings() -> None:
    text = dump(OBJECT)
    assert "x" * 300 in text


def test_dump_is_block_style() -> None:
    assert dump({"a": {"b": [1, 2]}}).startswith("a:\n  b:\n")


def test_dump_documents_separates_documents() -> None:
    text = dump_documents([{"a": 1}, {"b": 2}])
    assert text == "a: 1\n---\nb: 2\n"
    assert dump_documents([]) == ""
    assert parse_rendered(text) == [{"a": 1}, {"b": 2}]


class _Dict(dict[str, Any]):
    pass


class _List(list[Any]):
    pass


class _Str(str):
    pass


def test_dump_writes_subclasses_of_plain_data_as_the_plain_data() -> None:
    """The writer's fast paths test exact types; subclasses take the general route."""
    plain = {"a": {"b": [1, {"c": "x y"}], "d": []}, "e": [["f"], {}], "g": "h"}
    subclassed = _Dict(
        a=_Dict(b=_List([1, _Dict(c=_Str("x y"))]), d=_List()),
        e=_List([_List([_Str("f")]), _Dict()]),
        g=_Str("h"),
    )
    assert dump_documents([subclassed, _List([subclassed])]) == dump_documents([plain, [plain]])


def test_dump_scalars_read_back_as_themselves() -> None:
    values = [None, True, False, 0, -7, 10**20, 1.5, 1e-05, "", "yes", "a\x7fb", "\U0001f600"]
    assert parse_rendered(dump({"v": values})) == [{"v": values}]


def test_parse_rendered() -> None:
    assert parse_rendered("a: 1\n---\n- x\n---\n") == [{"a": 1}, ["x"], None]
    assert parse_rendered("") == []
    with pytest.raises(YamlSyntaxError) as caught:
        parse_rendered("a: [1\n")
    assert "rendered text is not valid YAML" in caught.value.message
    with pytest.raises(YamlSyntaxError):
        parse_rendered("a: 1\na: 2\n")


def test_parse_rendered_refuses_alias_bombs() -> None:
    """Rendered text never has aliases; if it had a bomb it must not be expanded."""
    with pytest.raises(YamlSyntaxError, match=r"anchor|alias"):
        parse_rendered(bomb(9, 9))


# --- property: what is dumped parses back the same ----------------------------------------

TRICKY = [
    "",
    "---",
    "...",
    "--- x",
    "{{ name }}",
    "{% if %}",
    "a: b",
    "- x",
    "#",
    "'",
    '"',
    "\\",
    "\n",
    "line\nbreak",
    "trailing\n",
    "  leading",
    "trailing ",
    "\u2028",
    "a\u2028b",
    "\u0085",
    "a\u0085b",
    "\u2029",
    "\t",
    "\r\n",
    "null",
    "~",
    "true",
    "yes",
    "no",
    "0x1F",
    "012",
    "1e3",
    ".inf",
    "&a",
    "*a",
    "!!str",
    "@",
    "`",
    "%",
    "?",
    ":",
    "é",
    "\U0001f600",
    "\ufeff",
]
texts = st.one_of(
    st.sampled_from(TRICKY),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30),
    st.lists(st.sampled_from(TRICKY), max_size=4).map("".join),
)
scalars = st.one_of(
    texts,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.none(),
)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts, children, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(json_like, min_size=1, max_size=3))
def test_dump_then_parse_gives_the_same_data(objects: list[Any]) -> None:
    text = dump_documents(objects)
    assert parse_rendered(text) == objects
    assert dump_documents(objects) == text


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(texts, json_like, min_size=1, max_size=4))
def test_dumped_mappings_load_with_positions(data: dict[str, Any]) -> None:
    [document] = load_documents(dump(data))
    assert document.data == data
    for key in data:
        assert document.has((key,))


@settings(max_examples=400, deadline=None)
@given(st.lists(json_like, min_size=1, max_size=3))
def test_parse_rendered_reads_like_ruamel(objects: list[Any]) -> None:
    """The event-based fast reader agrees with ruamel's own loader on any YAML it writes."""
    from ruamel.yaml import YAML

    writer = YAML(typ="safe", pure=True)
    buffer = io.StringIO()
    writer.dump_all(objects, buffer)
    text = buffer.getvalue()
    reader = YAML(typ="safe", pure=False)
    try:
        expected = list(reader.load_all(text))
        anchored = any(getattr(event, "anchor", None) for event in reader.parse(text))
    except YAMLError:
        assume(False)  # ruamel's pure writer makes a few texts its own C reader rejects
    if anchored:
        # ruamel's writer left a string such as `?&0` plain, which reads as an anchor:
        # rendered text never holds one, so the fast reader must refuse it, not guess.
        with pytest.raises(YamlSyntaxError, match="anchor"):
            parse_rendered(text)
        return
    assert parse_rendered(text) == expected
